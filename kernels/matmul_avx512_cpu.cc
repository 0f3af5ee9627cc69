// The matmul on AVX-512 F/BW/VL/DQ: 16-lane f32 accumulators, blocks of 32 columns, register tiles of up
// to 4 tokens (32 registers), the last partial block loaded masked against a zero-padded x (no scalar
// tail). Compiled for AVX-512 by the target pragma below only; everything else in the binary stays AVX2.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "engine/util/bf16.h"
#include "kernels/aligned_buffer.h"
#include "kernels/matmul_isa.h"
#include "kernels/simd.h"
#include "kernels/swiglu.h"

// Every header is included above this line: an inline function first defined below would be compiled
// for AVX-512 and could be the copy the linker keeps for the whole binary.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)
#else
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's intrinsics use self-initialised "undefined" vectors
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
#endif

#define LAYERSKIP_MATMUL_ISA avx512
#include "kernels/matmul_avx512_isa.h"
#include "kernels/matmul_tiles.h"

namespace layerskip::cpu {

void MatmulGroupAvx512(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  if (jobs[0].w->type() == WeightType::kF32) avx512::RunGroup<avx512::Avx512Isa, float>(x, n, jobs, num_jobs, pool);
  else avx512::RunGroup<avx512::Avx512Isa, uint16_t>(x, n, jobs, num_jobs, pool);
}

}  // namespace layerskip::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
