#pragma once
// Token choice from logits: argmax, and the sampling distribution after temperature, top-k and top-p.
#include <cstdint>

#include "engine/core/sampling_params.h"

namespace layerskip::cpu {

// Index of the largest logit (the first one on ties). logits: [V].
int Argmax(const float* logits, int64_t V);

// probs[V] = the distribution transformers' warpers give (temperature, then top-k, then top-p keeping the
// smallest most-likely set whose mass reaches top_p), renormalised; zero outside the kept set.
// Greedy params give a one-hot distribution at the argmax.
void SamplingProbs(const float* logits, int64_t V, const SamplingParams& params, float* probs);

// Inverse-CDF draw from probs[V] (need not be normalised) with u uniform in [0, 1).
int SampleFromProbs(const float* probs, int64_t V, double u);

}  // namespace layerskip::cpu
