#pragma once
// RMSNorm as in Llama: y = x / sqrt(mean(x^2) + eps) * w.
#include <cstdint>

namespace layerskip::cpu {

// x, y: [n, D] (may alias), w: [D].
void RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (rms_norm_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

namespace layerskip::cuda {

// x, y: [n, D] (may alias), w: [D]. y = w * (x / sqrt(mean(x^2) + eps)), one block per row.
cudaError_t RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
