#pragma once
// The time one decoding step costs on this machine, from measured times (device-neutral: it holds seconds,
// not kernel details), and what self-speculation with exit layer E and d drafts per round is predicted to
// gain over autoregressive decoding for a given acceptance.
#include <string>
#include <vector>

namespace layerskip {

struct CostModel {
  static constexpr int kMaxRows = 16;  // rows measured: n = 1..kMaxRows; larger n extrapolate linearly
  int num_layers = 0;
  std::vector<double> layer_seconds;       // [kMaxRows]: one decoder-layer pass over n rows (index n-1)
  std::vector<double> head_seconds;        // [kMaxRows]: the full exit head (final norm + LM head), n rows
  std::vector<double> draft_head_seconds;  // [kMaxRows]: the draft head (a vocabulary subset, else the full head)
  // [L+1]: prior_acceptance[E] = how often the exit after layer E-1 agrees with the full model's greedy
  // token (teacher-forced on a calibration text); [0] and [L] unused.
  std::vector<double> prior_acceptance;
  std::string source;  // "measured" (on the CPU), "measured on cuda:N", "cached <path>" or "default"

  double Layer(int n) const { return At(layer_seconds, n); }
  double Head(int n) const { return At(head_seconds, n); }
  double DraftHead(int n) const { return At(draft_head_seconds, n); }

  // One autoregressive step of `batch` sequences: L layer passes of batch rows and the head.
  double AutoregressiveStep(int batch) const;
  // One self-speculative round of `batch` sequences drafting d tokens each at exit layer E: d+1 passes of
  // [0, E) over batch rows (the last draft needs its exit row), d draft heads, one pass of [E, L) over
  // batch*(d+1) rows and the full head on those rows. d = 0 is AutoregressiveStep.
  double Round(int exit_layer, int d, int batch) const;

  // True when the vectors have the sizes above and every time is positive and finite.
  bool Valid() const;

 private:
  static double At(const std::vector<double>& t, int n);
};

// Expected tokens one round emits: 1 + sum_{i<d} reach[i], where reach[i] is the probability that the
// first i+1 drafts are all accepted.
double ExpectedTokens(const std::vector<double>& reach, int d);

// Predicted speedup of (E, d) over autoregressive decoding at `batch`:
// (ExpectedTokens / Round) / (1 / AutoregressiveStep).
double PredictedSpeedup(const CostModel& cost, int exit_layer, int d, int batch, const std::vector<double>& reach);

}  // namespace layerskip
