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

#if LAYERSKIP_WITH_CUDA  // CUDA (sampling_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

namespace layerskip::cuda {

// ids[i] = index of the largest logits[i, :] (the first one on ties); logits: [n, V].
cudaError_t Argmax(const float* logits, int64_t n, int64_t V, int* ids, cudaStream_t stream);
// probs[n, V] = softmax(logits / temperature) per row (temperature > 0; top-k / top-p run on the host).
cudaError_t SoftmaxTemperature(const float* logits, int64_t n, int64_t V, float temperature, float* probs,
                               cudaStream_t stream);
// ids[i] = inverse-CDF draw from probs[i, :] (need not be normalised) with u[i] in [0, 1), as the CPU
// SampleFromProbs (sums in double).
cudaError_t SampleFromProbs(const float* probs, int64_t n, int64_t V, const double* u, int* ids,
                            cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
