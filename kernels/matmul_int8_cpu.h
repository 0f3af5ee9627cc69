#pragma once
// y[n, M] = x[n, K] @ W[M, K]^T with W int8 (engine/model/weights.h layout): x is quantised per token in groups
// of 32 (symmetric int8, f32 scale), each group's dot product is exact in int32, and groups are combined in
// f32 in one fixed order (kernels/matmul_int8_cpu.cc). Every ISA path gives the same bits, and y[t, j] does not
// depend on n or the thread count (batch-invariant).
#include <cstdint>

#include "engine/core/matrix.h"
#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

enum class Int8Path { kScalar, kAvx2, kAvx512Vnni };
const char* Int8PathName(Int8Path p);  // "scalar", "avx2", "avx512-vnni"
Int8Path BestInt8Path();               // the fastest path this CPU supports
bool Int8PathSupported(Int8Path p);

// x: [n, K] f32, W: [M, K] int8, y: [n, M] f32. `path` must be supported (Int8PathSupported).
void MatmulInt8(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool, Int8Path path);
inline void MatmulInt8(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool) {
  MatmulInt8(x, n, w, y, pool, BestInt8Path());
}

}  // namespace layerskip::cpu
