#pragma once
// The automatic choice of exit layer E and draft length d (`--exit-layer auto`, `--speculations auto`):
// before each step, the (E, d) with the most predicted tokens/s from the cost model and the acceptance
// seen so far, or an autoregressive step when no (E, d) is predicted to beat it. Device-neutral: it only
// sees the CostModel's times and the accept counts.
#include <vector>

#include "engine/decode/cost_model.h"

namespace layerskip {

struct PolicyOptions {
  int exit_layer = 0;         // 0: choose E; else this E
  int speculations = -1;      // -1: choose d in [1, max_speculations]; else this d
  int max_speculations = 8;
  double prior_weight = 4.0;  // the calibration prior counts as this many observed drafts per position
  double decay = 0.97;        // older rounds at an exit layer count less (the text changes)
  double time_weight = 0.25;  // weight of the newest step in the measured / predicted time ratios (0: off)
  int probe_interval = 32;    // after this many autoregressive steps in a row, one speculative round to
                              // re-measure acceptance (only when the best prediction is >= probe_floor)
  double probe_floor = 0.8;
};

struct SpeculationChoice {
  int exit_layer = 0;    // the round's E (the best E even for an autoregressive step)
  int speculations = 0;  // d; 0: an autoregressive step
  double predicted_speedup = 1.0;            // over autoregressive decoding
  double predicted_tokens_per_second = 0.0;  // all sequences of the batch together
  bool probe = false;                        // a speculative round taken to re-measure acceptance
};

class SpeculationPolicy {
 public:
  SpeculationPolicy(const CostModel& cost, const PolicyOptions& options);

  // The choice for the next step of `batch` sequences (larger batches make verification dearer).
  // exit_layer > 0 restricts the choice to that E, speculations > 0 to that d (else the options' limits);
  // the service shares one policy between batches of different requests' settings this way.
  SpeculationChoice Choose(int batch, int exit_layer = 0, int speculations = 0);
  // One sequence's round at exit layer E: `drafted` drafts, of which the first `accepted` were accepted.
  void Observe(int exit_layer, int drafted, int accepted);
  // The measured time of one decoding step (no prefill in it) that Choose predicted: rounds (d > 0) and
  // autoregressive steps keep their own running ratio of measured to predicted time, which scales the cost
  // model's predictions, so the choice follows the machine when its load changes after calibration.
  void ObserveTime(int exit_layer, int d, int batch, double seconds);
  // The current measured / predicted ratios (1 until observed).
  double autoregressive_scale() const { return ar_scale_; }
  double speculative_scale() const { return spec_scale_; }
  // reach[i], i < max_d: the estimated probability that the first i+1 drafts at E are all accepted.
  std::vector<double> Reach(int exit_layer, int max_d) const;

  const CostModel& cost() const { return cost_; }

 private:
  CostModel cost_;
  PolicyOptions options_;
  std::vector<std::vector<double>> drafted_, accepted_;  // [E][i], decayed counts
  int autoregressive_streak_ = 0;
  double ar_scale_ = 1.0, spec_scale_ = 1.0;  // running measured / predicted step times
};

}  // namespace layerskip
