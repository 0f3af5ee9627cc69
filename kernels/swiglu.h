#pragma once
// SwiGLU activation of the Llama MLP: out = silu(gate) * up.
#include <cstdint>

#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// gate, up, out: [count] (out may alias gate). Element-wise, so splitting it over `pool` (may be null)
// changes no result.
void SwiGlu(const float* gate, const float* up, float* out, int64_t count, ThreadPool* pool = nullptr);

// gate[i] = silu(gate[i]) * up[i] for i < count, on the calling thread: the element arithmetic of SwiGlu,
// shared with the fused gate/up matmul (kernels/matmul.h) so both give the same bits.
void SwiGluRows(float* gate, const float* up, int64_t count);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (swiglu_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

namespace layerskip::cuda {

// out[i] = silu(gate[i]) * up[i] over [count] (out may alias gate).
cudaError_t SwiGlu(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream);
// x[i] += h[i] over [count] (the residual add).
cudaError_t AddInPlace(float* x, const float* h, int64_t count, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
