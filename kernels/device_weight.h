#pragma once
// The types the CUDA ops share: the element type of a device buffer and a weight matrix in device memory.
// Plain data, no CUDA header.
//
// The CUDA ops: each op's header (kernels/<op>.h) declares its CUDA entry points (namespace layerskip::cuda,
// defined in kernels/<op>_cuda.cu) beside its CPU ones (namespace layerskip::cpu), with the same math and the
// shared arguments in the same order; the CPU op's ThreadPool becomes a `stream` (rope.h notes the one
// exception). All pointers are device pointers; every op is enqueued on `stream` and returns the launch error
// (cudaSuccess when enqueued); kernels/cuda_common.h turns the errors into absl::Status.
//
// A header's CUDA part sits inside `#if LAYERSKIP_WITH_CUDA`, which CMake defines on layerskip_kernels_cuda and
// so on every target that links it (kernels/CMakeLists.txt): a CPU-only build never needs cuda_runtime.h
// (cudaError_t, an enum without a fixed underlying type, cannot be forward-declared). The op headers stay
// C++17: nvcc compiles them with the .cu files.
//
// Batch invariance (docs/cuda.md): every output element is computed by one fixed sequence of operations that
// depends on the shapes of the weights and on the token's own position, never on the number of tokens in the
// call. The library is compiled with -fmad=false, so only the fmaf() calls spelled in the source are fused.
#include <cstdint>

namespace layerskip::cuda {

enum class DType { kBF16, kF32 };

// A row-major [rows, cols] weight matrix in device memory (bf16 as raw uint16_t, or f32).
struct DeviceWeight {
  DType type = DType::kBF16;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

}  // namespace layerskip::cuda
