#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/sampling.h"

namespace layerskip::cpu {

int Argmax(const float* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int>(best);
}

void SamplingProbs(const float* logits, int64_t V, const SamplingParams& params, float* probs) {
  if (params.greedy()) {
    std::fill(probs, probs + V, 0.0f);
    probs[Argmax(logits, V)] = 1.0f;
    return;
  }
  // Softmax of logits / T.
  const float inv_t = 1.0f / params.temperature;
  float max_logit = -INFINITY;
  for (int64_t i = 0; i < V; ++i) max_logit = std::max(max_logit, logits[i] * inv_t);
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) {
    probs[i] = std::exp(logits[i] * inv_t - max_logit);
    sum += probs[i];
  }
  const bool top_k = params.top_k > 0 && params.top_k < V;
  const bool top_p = params.top_p < 1.0f;
  if (!top_k && !top_p) {
    for (int64_t i = 0; i < V; ++i) probs[i] = static_cast<float>(probs[i] / sum);
    return;
  }
  // Candidates in descending probability (index order on ties), cut to top-k, then to top-p mass.
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  auto desc = [&](int a, int b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); };
  int64_t keep = V;
  if (top_k) {
    keep = params.top_k;
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), desc);
  } else {
    std::sort(order.begin(), order.end(), desc);
  }
  if (top_p) {
    double kept_sum = 0.0;
    for (int64_t r = 0; r < keep; ++r) kept_sum += probs[order[r]];
    double cum = 0.0;
    int64_t r = 0;
    for (; r < keep; ++r) {
      cum += probs[order[r]] / kept_sum;
      if (cum >= params.top_p) { ++r; break; }
    }
    keep = std::max<int64_t>(1, std::min(keep, r));
  }
  double kept = 0.0;
  for (int64_t r = 0; r < keep; ++r) kept += probs[order[r]];
  std::vector<float> out(V, 0.0f);
  for (int64_t r = 0; r < keep; ++r) out[order[r]] = static_cast<float>(probs[order[r]] / kept);
  std::copy(out.begin(), out.end(), probs);
}

int SampleFromProbs(const float* probs, int64_t V, double u) {
  double total = 0.0;
  for (int64_t i = 0; i < V; ++i) total += probs[i];
  const double target = u * total;
  double cum = 0.0;
  int64_t last_nonzero = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (probs[i] <= 0.0f) continue;
    last_nonzero = i;
    cum += probs[i];
    if (target < cum) return static_cast<int>(i);
  }
  return static_cast<int>(last_nonzero);
}

}  // namespace layerskip::cpu
