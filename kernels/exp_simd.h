#pragma once
// A vectorised exp(x) for the softmax and SwiGLU, the same arithmetic in every lane on every instruction
// set (AVX2 here; kernels/exp_avx512.h spells the same operations for 16 lanes), so a value's exp never
// depends on the path's vector width, the batch or where a row ends (tails go through the vector code).
//
//   x' = min(89, max(-104, x))             (NaN stays NaN; beyond these exp is +inf or 0 in f32)
//   n  = round_to_nearest_even(x' * log2(e)),  r = (x' - n * ln2_hi) - n * ln2_lo   (two FMAs)
//   p  = 1 + r + r^2 * P(r)                (P: degree 5, Horner with FMAs; e^r on [-ln2/2, ln2/2])
//   exp(x) = (p * 2^(n >> 1)) * 2^(n - (n >> 1))   (two normal scale factors: overflow gives +inf and
//                                                    results below FLT_MIN round correctly to subnormals/0)
// Within 2 ulp of std::exp over the finite range (kernels_exp_test measures it).
#include <immintrin.h>

namespace layerskip::cpu {

namespace exp_poly {
inline constexpr float kLo = -104.0f, kHi = 89.0f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                       kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
}  // namespace exp_poly

// exp of 8 lanes.
inline __m256 Exp8(__m256 x) {
  using namespace exp_poly;
  x = _mm256_min_ps(_mm256_set1_ps(kHi), _mm256_max_ps(_mm256_set1_ps(kLo), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kP0), r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// Lanes [0, count) of 8 from p, the rest 0 (a row's tail through the vector code).
inline __m256 LoadPartial8(const float* p, int count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), idx);
  return _mm256_maskload_ps(p, mask);
}
inline void StorePartial8(float* p, int count, __m256 v) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(count), idx), v);
}

// y[i] = exp(x[i]) for i < count (y may alias x).
inline void ExpArray(const float* x, float* y, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, Exp8(_mm256_loadu_ps(x + i)));
  if (i < count) {
    const int left = static_cast<int>(count - i);
    StorePartial8(y + i, left, Exp8(LoadPartial8(x + i, left)));
  }
}

}  // namespace layerskip::cpu
