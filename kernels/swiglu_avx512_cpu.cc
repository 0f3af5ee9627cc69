// SwiGLU on AVX-512 F/BW/VL/DQ: per lane the operations of kernels/swiglu_cpu.cc's AVX2 loop (the same
// vector exp, one IEEE division, one multiply), so both give the same bits; the tail is a masked vector.
// Compiled for AVX-512 by the target pragma below only (kernels/matmul_avx512_cpu.cc says why).
#include <immintrin.h>

#include <cstdint>

#include "kernels/exp_simd.h"
#include "kernels/swiglu_isa.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))), apply_to = function)
#else
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's intrinsics use self-initialised "undefined" vectors
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq")
#endif

namespace layerskip::cpu::avx512 {
namespace {

#include "kernels/exp_avx512.h"

inline __m512 SwiGlu16(__m512 g, __m512 u) {
  const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

}  // namespace

void SwiGluRange(const float* gate, const float* up, float* out, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16)
    _mm512_storeu_ps(out + i, SwiGlu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < count) {
    const __mmask16 m = static_cast<__mmask16>((1u << (count - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, SwiGlu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace layerskip::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
