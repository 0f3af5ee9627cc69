#pragma once
// Matmul with the weight layout of PyTorch's nn.Linear: y[n, M] = x[n, K] @ W[M, K]^T.
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "engine/core/matrix.h"
#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// x: [n, K] f32 (row stride K), W: [M, K] bf16, f32 or int8 (kernels/matmul_int8_cpu.h), y: [n, M] f32 (row stride M).
// Batch-invariant: y[i, j] is the same bits for any n and any thread count (each dot product has one
// fixed accumulation order on the process's kernel path, kernels/cpu_features.h; threads split the rows
// of W).
void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool);

// Several products of the same x in one parallel loop (one wait for the threads instead of one per
// product): for each (W_i [M_i, K], y_i [n, M_i]), y_i = x @ W_i^T. The same bits as separate Matmul calls.
void MatmulMany(const float* x, int64_t n, std::initializer_list<std::pair<const Matrix*, float*>> products,
                ThreadPool* pool);

// The Llama MLP's first half in one parallel loop: out[n, F] = silu(x @ W_gate^T) * (x @ W_up^T), with
// up [n, F] as scratch. The same bits as Matmul, Matmul and SwiGlu (kernels/swiglu.h) one after another.
void MatmulSwiGlu(const float* x, int64_t n, const Matrix& w_gate, const Matrix& w_up, float* out, float* up,
                  ThreadPool* pool);

}  // namespace layerskip::cpu
