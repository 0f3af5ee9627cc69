#pragma once
// AVX-512 traits of the tiled matmul (kernels/matmul_tiles.h), for f32 products: included by the AVX-512
// translation units inside their target pragma, in the namespace they name by LAYERSKIP_MATMUL_ISA. The
// headers it includes must already be included before that pragma (their inline functions stay AVX2).
//
// f32 W: w0 = w[0..15], w1 = w[16..31]. bf16 W: one 64-byte load widened by interleaving with zeros
// within 128-bit lanes: w0 = w[0..3, 8..11, 16..19, 24..27], w1 = w[4..7, 12..15, 20..23, 28..31], and x
// permuted to match (PrepareX). The last partial block is loaded masked; x is zero past K.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/util/bf16.h"
#include "kernels/simd.h"

#ifndef LAYERSKIP_MATMUL_ISA
#error "define LAYERSKIP_MATMUL_ISA before including"
#endif

namespace layerskip::cpu::LAYERSKIP_MATMUL_ISA {

struct Avx512Isa {
  using V = __m512;
  using X = float;
  using Mask = uint32_t;  // one bit per column of a 32-column block
  static constexpr int kBlock = 32;
  static constexpr bool kMaskedTail = true;
  static constexpr int kTokens = 4;
  static constexpr Mask kFullMask = 0xffffffffu;
  static constexpr int TileRows(int T) { return T <= 3 ? 4 : 3; }
  static Mask TailMask(int64_t left) { return left >= 32 ? kFullMask : (Mask{1} << left) - 1; }
  static V Zero() { return _mm512_setzero_ps(); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static V Fma(V x, V w, V acc) { return _mm512_fmadd_ps(x, w, acc); }
  // Fixed tree: (lo256 + hi256), then the AVX2 order ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
  static __m256 Fold(V v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0x0E)));
  }
  static float Sum(V v) { return HorizontalSum(Fold(v)); }
  // 8 sums at once, bit for bit Sum of each (kernels/simd.h's HorizontalSum8 after the same fold).
  static void Sum8(const V* v, float* out) {
    __m256 h[8];
    for (int q = 0; q < 8; ++q) h[q] = Fold(v[q]);
    _mm256_storeu_ps(out, HorizontalSum8(h));
  }
  template <int H>
  static V LoadX(const float* x) { return _mm512_loadu_ps(x + 16 * H); }
  template <int H>
  static V LoadW(const float* w, Mask m) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> (16 * H)), w + 16 * H);
  }
  template <int H>
  static V LoadW(const uint16_t* w, Mask m) {
    const __m512i v = _mm512_maskz_loadu_epi16(m, w);
    return _mm512_castsi512_ps(H == 0 ? _mm512_unpacklo_epi16(_mm512_setzero_si512(), v)
                                      : _mm512_unpackhi_epi16(_mm512_setzero_si512(), v));
  }
  static float ScalarW(const float* w) { return *w; }
  static float ScalarW(const uint16_t* w) { return Bf16ToF32(*w); }
  // x [n, K] -> out [n, kx] (kx: K rounded up to 32), zero past K; for bf16 W each block of 32 reordered
  // to match LoadW's widening.
  template <typename W>
  static void PrepareX(const float* x, int64_t n, int64_t K, int64_t kx, float* out) {
    // out0 = x[0..3, 8..11, 16..19, 24..27], out1 = x[4..7, 12..15, 20..23, 28..31] of a block a|b
    // (indices >= 16 pick from b).
    const __m512i i0 = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i i1 = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * K;
      float* oi = out + i * kx;
      for (int64_t k = 0; k < kx; k += 32) {
        const __m512 a = _mm512_maskz_loadu_ps(ColumnMask16(K - k), xi + k);
        const __m512 b = _mm512_maskz_loadu_ps(ColumnMask16(K - k - 16), xi + k + 16);
        if constexpr (std::is_same_v<W, float>) {
          _mm512_storeu_ps(oi + k, a);
          _mm512_storeu_ps(oi + k + 16, b);
        } else {
          _mm512_storeu_ps(oi + k, _mm512_permutex2var_ps(a, i0, b));
          _mm512_storeu_ps(oi + k + 16, _mm512_permutex2var_ps(a, i1, b));
        }
      }
    }
  }
  // Lanes [0, left) of 16 (all when left >= 16, none when left <= 0).
  static __mmask16 ColumnMask16(int64_t left) {
    return left >= 16 ? __mmask16{0xffff} : left <= 0 ? __mmask16{0} : static_cast<__mmask16>((1u << left) - 1);
  }
};

}  // namespace layerskip::cpu::LAYERSKIP_MATMUL_ISA
