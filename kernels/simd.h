#pragma once
// AVX2 helpers shared by the CPU kernels. Every reduction has one fixed order, so results never depend on
// batch size or thread count.
#include <immintrin.h>

#include <cstdint>

namespace layerskip::cpu {

// 8 bf16 -> 8 f32 (exact).
inline __m256 LoadBf16x8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Sum of 8 lanes in a fixed order: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float HorizontalSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// HorizontalSum of eight vectors at once, bit for bit: lane i of the result is HorizontalSum(v[i]). The
// same pairs are added in the same association (x + y and y + x are the same bits), via transposes.
inline __m256 HorizontalSum8(const __m256* v) {
  // Step 1, lo + hi: a[i] = [v[i].lo + v[i].hi] for i and i + 4 in the two halves of lane i % 4's vector.
  __m256 a[4];
  for (int i = 0; i < 4; ++i)
    a[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[i], v[i + 4], 0x20), _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
  // Step 2, (l0+l4)+(l2+l6) and (l1+l5)+(l3+l7): interleave pairs so those operands meet in one lane.
  const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a[0], a[1]), _mm256_unpackhi_ps(a[0], a[1]));
  const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(a[2], a[3]), _mm256_unpackhi_ps(a[2], a[3]));
  // Step 3: even sums + odd sums; lanes [0..3] are v[0..3], lanes [4..7] are v[4..7].
  return _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
}

// Dot product of two f32 vectors of length n: two 8-lane accumulators over blocks of 16, then a scalar tail.
inline float DotF32(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
  }
  float sum = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

}  // namespace layerskip::cpu
