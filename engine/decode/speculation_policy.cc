#include "engine/decode/speculation_policy.h"

#include <algorithm>

namespace layerskip {

SpeculationPolicy::SpeculationPolicy(const CostModel& cost, const PolicyOptions& options)
    : cost_(cost), options_(options) {
  const int L = cost_.num_layers;
  options_.max_speculations = std::max(1, options_.max_speculations);
  if (options_.speculations > 0) options_.max_speculations = std::max(options_.max_speculations, options_.speculations);
  drafted_.assign(L + 1, std::vector<double>(options_.max_speculations, 0.0));
  accepted_ = drafted_;
  if (cost_.prior_acceptance.size() != static_cast<size_t>(L + 1)) cost_.prior_acceptance.assign(L + 1, 0.5);
}

void SpeculationPolicy::Observe(int E, int drafted, int accepted) {
  if (E < 1 || E >= cost_.num_layers || drafted <= 0) return;
  std::vector<double>& dr = drafted_[E];
  std::vector<double>& ac = accepted_[E];
  for (size_t i = 0; i < dr.size(); ++i) dr[i] *= options_.decay, ac[i] *= options_.decay;
  for (int i = 0; i < drafted && i < static_cast<int>(dr.size()); ++i) {
    dr[i] += 1.0;
    if (i < accepted) ac[i] += 1.0;
  }
}

std::vector<double> SpeculationPolicy::Reach(int E, int max_d) const {
  std::vector<double> reach(max_d, 0.0);
  if (E < 1 || E >= cost_.num_layers) return reach;
  const std::vector<double>& dr = drafted_[E];
  const std::vector<double>& ac = accepted_[E];
  const double w = options_.prior_weight;
  // Conditional acceptance at position i (the draft accepted given the ones before it were): observed
  // accepts over the rounds that reached i, with the prior as w pseudo-observations. The prior of the
  // positions past the first is the blended overall conditional rate.
  std::vector<double> reached(dr.size(), 0.0);
  double sum_acc = 0, sum_reached = 0;
  for (size_t i = 0; i < dr.size(); ++i) {
    reached[i] = i == 0 ? dr[0] : (dr[i - 1] > 0 ? ac[i - 1] * dr[i] / dr[i - 1] : 0.0);
    sum_acc += ac[i];
    sum_reached += reached[i];
  }
  const double prior = cost_.prior_acceptance[E];
  const double overall = (sum_acc + w * prior) / (sum_reached + w);
  double p = 1.0;
  for (int i = 0; i < max_d; ++i) {
    double c = overall;
    if (i == 0) c = (ac[0] + w * prior) / (dr[0] + w);
    else if (i < static_cast<int>(dr.size())) c = (ac[i] + w * overall) / (reached[i] + w);
    p *= std::clamp(c, 0.0, 1.0);
    reach[i] = p;
  }
  return reach;
}

void SpeculationPolicy::ObserveTime(int E, int d, int batch, double seconds) {
  const double predicted = d > 0 ? cost_.Round(E, d, std::max(1, batch)) : cost_.AutoregressiveStep(std::max(1, batch));
  if (!(seconds > 0) || !(predicted > 0)) return;
  const double ratio = std::clamp(seconds / predicted, 0.05, 100.0);
  double& scale = d > 0 ? spec_scale_ : ar_scale_;
  scale = (1.0 - options_.time_weight) * scale + options_.time_weight * ratio;
}

SpeculationChoice SpeculationPolicy::Choose(int batch, int exit_layer, int speculations) {
  batch = std::max(1, batch);
  const int L = cost_.num_layers;
  const int fixed = exit_layer > 0 && exit_layer < L ? exit_layer : options_.exit_layer;
  const int e_lo = fixed > 0 ? fixed : 1;
  const int e_hi = fixed > 0 ? fixed : L - 1;
  const int fixed_d = speculations > 0 ? speculations : options_.speculations;
  const int d_lo = fixed_d > 0 ? fixed_d : 1;
  const int d_hi = fixed_d > 0 ? fixed_d : options_.max_speculations;
  const double ar = cost_.AutoregressiveStep(batch) * ar_scale_;
  SpeculationChoice best;
  best.exit_layer = e_lo;
  double best_speedup = -1.0;
  for (int e = e_lo; e <= e_hi; ++e) {
    const std::vector<double> reach = Reach(e, d_hi);
    for (int d = d_lo; d <= d_hi; ++d) {
      const double s = PredictedSpeedup(cost_, e, d, batch, reach) * ar_scale_ / spec_scale_;
      if (s > best_speedup) {
        best_speedup = s;
        best.exit_layer = e;
        best.speculations = d;
        best.predicted_speedup = s;
        best.predicted_tokens_per_second = batch * ExpectedTokens(reach, d) / (cost_.Round(e, d, batch) * spec_scale_);
      }
    }
  }
  if (best_speedup > 1.0) {
    autoregressive_streak_ = 0;
    return best;
  }
  if (++autoregressive_streak_ > options_.probe_interval && best_speedup >= options_.probe_floor) {
    autoregressive_streak_ = 0;
    best.probe = true;
    return best;
  }
  best.speculations = 0;
  best.predicted_speedup = 1.0;
  best.predicted_tokens_per_second = batch / ar;
  return best;
}

}  // namespace layerskip
