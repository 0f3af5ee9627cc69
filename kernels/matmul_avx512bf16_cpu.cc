// The matmul on AVX-512 with AVX512_BF16: for bf16 weights, x is rounded to bf16 (nearest even) once per
// call and each pair of columns is one vdpbf16ps lane (16 lanes = 32 columns per instruction, blocks of
// 64 columns, the last partial block masked); f32 weights use the plain AVX-512 kernel. Compiled for
// these instructions by the target pragma below only.
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
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))), apply_to = function)
#else
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's intrinsics use self-initialised "undefined" vectors
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
#endif

#define LAYERSKIP_MATMUL_ISA avx512bf16
#include "kernels/matmul_avx512_isa.h"

namespace layerskip::cpu::avx512bf16 {

// Lane i of a half block accumulates columns 2i and 2i + 1: acc = vdpbf16ps(acc, x, w).
struct Bf16DotIsa {
  using V = __m512;
  using X = uint16_t;     // x as bf16
  using Mask = uint64_t;  // one bit per column of a 64-column block
  static constexpr int kBlock = 64;
  static constexpr bool kMaskedTail = true;
  static constexpr int kTokens = 4;
  static constexpr Mask kFullMask = ~uint64_t{0};
  static constexpr int TileRows(int T) { return T <= 3 ? 4 : 3; }
  static Mask TailMask(int64_t left) { return left >= 64 ? kFullMask : (Mask{1} << left) - 1; }
  static V Zero() { return _mm512_setzero_ps(); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Fma(V x, V w, V acc) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(x), (__m512bh)_mm512_castps_si512(w));
  }
  static float Sum(V v) { return Avx512Isa::Sum(v); }
  static void Sum8(const V* v, float* out) { Avx512Isa::Sum8(v, out); }
  template <int H>
  static V LoadX(const uint16_t* x) { return _mm512_castsi512_ps(_mm512_loadu_si512(x + 32 * H)); }
  template <int H>
  static V LoadW(const uint16_t* w, Mask m) {
    return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(static_cast<__mmask32>(m >> (32 * H)), w + 32 * H));
  }
  static float ScalarW(const uint16_t* w) { return Bf16ToF32(*w); }
  // x [n, K] f32 -> out [n, kx] bf16 (kx: K rounded up to 64), zero past K.
  // (vcvtne2ps2bf16: round to nearest even, as F32ToBf16; the zero padding converts to bf16 zeros.)
  template <typename W>
  static void PrepareX(const float* x, int64_t n, int64_t K, int64_t kx, uint16_t* out) {
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * K;
      uint16_t* oi = out + i * kx;
      for (int64_t k = 0; k < kx; k += 32) {
        const __m512 lo = _mm512_maskz_loadu_ps(Avx512Isa::ColumnMask16(K - k), xi + k);
        const __m512 hi = _mm512_maskz_loadu_ps(Avx512Isa::ColumnMask16(K - k - 16), xi + k + 16);
        _mm512_storeu_si512(oi + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
    }
  }
};

}  // namespace layerskip::cpu::avx512bf16

#include "kernels/matmul_tiles.h"

namespace layerskip::cpu {

void MatmulGroupAvx512Bf16(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  using namespace avx512bf16;
  if (jobs[0].w->type() == WeightType::kF32) RunGroup<Avx512Isa, float>(x, n, jobs, num_jobs, pool);
  else RunGroup<Bf16DotIsa, uint16_t>(x, n, jobs, num_jobs, pool);
}

}  // namespace layerskip::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
