#pragma once
// Matmul with the weight layout of PyTorch's nn.Linear: y[n, M] = x[n, K] @ W[M, K]^T.
#include <cstdint>

#include "engine/model/weights.h"
#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// x: [n, K] f32 (row stride K), W: [M, K] bf16, f32 or int8 (kernels/matmul_int8_cpu.h), y: [n, M] f32 (row stride M).
// Batch-invariant: y[i, j] is the same bits for any n and any thread count (each dot product has one
// fixed accumulation order; threads split the rows of W).
void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool);

}  // namespace layerskip::cpu
