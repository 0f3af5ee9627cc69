#pragma once
// Token embedding lookup.
#include <cstdint>

#include "engine/core/matrix.h"

namespace layerskip::cpu {

// ids: [n] (each in [0, V)), table: [V, D] bf16 or f32, out: [n, D] f32.
void Embedding(const int* ids, int64_t n, const Matrix& table, float* out);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (embedding_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

#include "kernels/device_weight.h"

namespace layerskip::cuda {

// ids: [n] (each in [0, V), unchecked), table: [V, D], out: [n, D] f32.
cudaError_t Embedding(const int* ids, int64_t n, const DeviceWeight& table, float* out, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
