#pragma once
// Matmul with the weight layout of PyTorch's nn.Linear: y[n, M] = x[n, K] @ W[M, K]^T.
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "engine/core/matrix.h"
#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

enum class CpuKernels;  // kernels/cpu_features.h (not included: this header is also nvcc's)

// x: [n, K] f32 (row stride K), W: [M, K] bf16, f32 or int8 (kernels/matmul_int8_cpu.h), y: [n, M] f32 (row stride M).
// Batch-invariant: y[i, j] is the same bits for any n and any thread count (each dot product has one
// fixed accumulation order on a kernel path, kernels/cpu_features.h; threads split the rows of W).
// `path`: the float kernels' path (one the host supports; int8 weights have their own kernels and
// ignore it); without it, the process's generated-token path (ActiveCpuKernels). Each function below
// takes it the same way.
void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool, CpuKernels path);
void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool);

// Several products of the same x in one parallel loop (one wait for the threads instead of one per
// product): for each (W_i [M_i, K], y_i [n, M_i]), y_i = x @ W_i^T. The same bits as separate Matmul calls.
void MatmulMany(const float* x, int64_t n, std::initializer_list<std::pair<const Matrix*, float*>> products,
                ThreadPool* pool, CpuKernels path);
void MatmulMany(const float* x, int64_t n, std::initializer_list<std::pair<const Matrix*, float*>> products,
                ThreadPool* pool);

// The Llama MLP's first half in one parallel loop: out[n, F] = silu(x @ W_gate^T) * (x @ W_up^T), with
// up [n, F] as scratch. The same bits as Matmul, Matmul and SwiGlu (kernels/swiglu.h) one after another.
void MatmulSwiGlu(const float* x, int64_t n, const Matrix& w_gate, const Matrix& w_up, float* out, float* up,
                  ThreadPool* pool, CpuKernels path);
void MatmulSwiGlu(const float* x, int64_t n, const Matrix& w_gate, const Matrix& w_up, float* out, float* up,
                  ThreadPool* pool);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (matmul_cuda.cu, gemv_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

#include "kernels/device_weight.h"
#include "kernels/gemv_plan.h"  // GemvPlanKind (plain C++)

namespace layerskip::cuda {

// x: [n, K] f32, W: [M, K] (bf16 or f32, nn.Linear layout), y: [n, M] f32 (y = x @ W^T).
// Batch-invariant: y[i, j] is the same bits for any n (see matmul_cuda.cu for the fixed order).
cudaError_t Matmul(const float* x, int64_t n, const DeviceWeight& w, float* y, cudaStream_t stream);

// The decode GEMV (gemv_cuda.cu; plan and CPU emulation in kernels/gemv_plan.h).
enum class GemvEpilogue {
  kStore,   // y[n, M] = x W^T
  kAdd,     // y[n, M] += x W^T (the residual add: y + (x W^T), as AddInPlace)
  kSwiGlu,  // W = [gate; up] ([2F, K]): y[n, F] = silu(x gate^T) * (x up^T), as SwiGlu
};
// Whether Gemv takes this weight (K % 8 == 0; SwiGLU: an even row count). A property of the shape only.
bool GemvSupported(const DeviceWeight& w, GemvEpilogue epilogue);
// x: [n, K] f32, W: [M, K]; any n (tiles of up to 16 tokens read each weight once). y[i, j] has one fixed
// order of operations per weight shape (split-K from (M, K) only): bitwise the same for any n. With a
// split of 1 it is bitwise the old Matmul. cudaErrorInvalidValue for an unsupported shape.
// norm_w ([K], optional): RMSNorm folded in, the GEMV of RmsNorm(x, norm_w, eps) bitwise (each block
// recomputes its tokens' norm scale in RmsNorm's order; x must not alias y).
cudaError_t Gemv(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                 cudaStream_t stream, const float* norm_w = nullptr, float eps = 0.0f);
// Issue 17, not yet run on a GPU (docs/cuda.md, "Issue 17, step 2"): Gemv under a chosen split-K rule
// (kernels/gemv_plan.h GemvPlanKind; kDefault is Gemv). Bitwise GemvReference(..., kind), batch-invariant.
cudaError_t GemvPlanned(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                        cudaStream_t stream, GemvPlanKind kind, const float* norm_w = nullptr, float eps = 0.0f);
// Floats of scratch GemvArgmax needs for n tokens of a [M, K] weight.
int64_t GemvArgmaxScratchFloats(int64_t M, int64_t K, int64_t n, GemvPlanKind kind = GemvPlanKind::kDefault);
// ids[n] = Argmax(GemvPlanned(x, n, w, kStore, kind)) without writing the [n, M] product: the GEMV's epilogue
// keeps a (max, first index) candidate per (token, block) in `scratch` and a second kernel reduces them; the
// same values are compared, so the ids equal Argmax's bitwise (first index on ties; all NaN: 0).
cudaError_t GemvArgmax(const float* x, int64_t n, const DeviceWeight& w, float* scratch, int* ids,
                       cudaStream_t stream, GemvPlanKind kind = GemvPlanKind::kDefault);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
