#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/simd.h"

namespace layerskip::cpu {
namespace {

// Loads the 16 weights at w as two f32 vectors (w0, w1).
// f32: w0 = w[0..7], w1 = w[8..15].
// bf16: one 32-byte load widened by interleaving with zeros, which works within 128-bit lanes:
// w0 = w[0..3, 8..11], w1 = w[4..7, 12..15]. x is laid out the same way beforehand (PermuteForBf16), so
// the dot product is unchanged in value and the widening costs no shifts on the FMA ports.
inline void LoadW16(const float* w, __m256& w0, __m256& w1) {
  w0 = _mm256_loadu_ps(w);
  w1 = _mm256_loadu_ps(w + 8);
}
inline void LoadW16(const uint16_t* w, __m256& w0, __m256& w1) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i zero = _mm256_setzero_si256();
  w0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v));
  w1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v));
}
inline float ScalarW(const uint16_t* w) { return Bf16ToF32(*w); }
inline float ScalarW(const float* w) { return *w; }

constexpr int kPrefetchBytes = 1024;

// R rows of W times T tokens of x. Every (token, row) dot product has one fixed arithmetic: two
// accumulators over blocks of 16 (lanes as LoadW16 lays them out), a fixed horizontal sum, then the
// scalar tail in order. So the result does not depend on how many rows or tokens are computed together.
template <int R, int T, typename W>
inline void MicroKernel(const float* const* xs, const W* const* ws, int64_t K, float* const* ys, int64_t j) {
  __m256 acc[R][T][2];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 w0[R], w1[R];
    for (int r = 0; r < R; ++r) {
      // Rows are 4 KiB apart for a 2048-wide bf16 matrix: hardware prefetchers stop at page boundaries.
      _mm_prefetch(reinterpret_cast<const char*>(ws[r] + k) + kPrefetchBytes, _MM_HINT_T0);
      LoadW16(ws[r] + k, w0[r], w1[r]);
    }
    for (int t = 0; t < T; ++t) {
      __m256 x0 = _mm256_loadu_ps(xs[t] + k), x1 = _mm256_loadu_ps(xs[t] + k + 8);
      for (int r = 0; r < R; ++r) {
        acc[r][t][0] = _mm256_fmadd_ps(x0, w0[r], acc[r][t][0]);
        acc[r][t][1] = _mm256_fmadd_ps(x1, w1[r], acc[r][t][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = HorizontalSum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
      for (int64_t kk = k; kk < K; ++kk) sum += xs[t][kk] * ScalarW(ws[r] + kk);
      ys[t][j + r] = sum;
    }
  }
}

// Rows [j0, j1) of W against all n tokens: tokens in groups of 3 (then 2, 1), rows in pairs.
template <typename W>
void MatmulRows(const float* x, int64_t n, const W* w, int64_t K, int64_t M, float* y, int64_t j0, int64_t j1) {
  constexpr int64_t kRowBlock = 64;  // rows kept hot in cache while all token groups pass over them
  for (int64_t jb = j0; jb < j1; jb += kRowBlock) {
    const int64_t je = std::min(j1, jb + kRowBlock);
    for (int64_t i = 0; i < n;) {
      const int T = n - i >= 3 ? 3 : static_cast<int>(n - i);
      const float* xs[3] = {x + i * K, x + std::min(i + 1, n - 1) * K, x + std::min(i + 2, n - 1) * K};
      float* ys[3] = {y + i * M, y + std::min(i + 1, n - 1) * M, y + std::min(i + 2, n - 1) * M};
      int64_t j = jb;
      if (T == 1) {  // decode: more rows in flight per pass over x
        for (; j + 4 <= je; j += 4) {
          const W* ws[4] = {w + j * K, w + (j + 1) * K, w + (j + 2) * K, w + (j + 3) * K};
          MicroKernel<4, 1>(xs, ws, K, ys, j);
        }
      }
      for (; j + 2 <= je; j += 2) {
        const W* ws[2] = {w + j * K, w + (j + 1) * K};
        if (T == 3) MicroKernel<2, 3>(xs, ws, K, ys, j);
        else if (T == 2) MicroKernel<2, 2>(xs, ws, K, ys, j);
        else MicroKernel<2, 1>(xs, ws, K, ys, j);
      }
      for (; j < je; ++j) {
        const W* ws[1] = {w + j * K};
        if (T == 3) MicroKernel<1, 3>(xs, ws, K, ys, j);
        else if (T == 2) MicroKernel<1, 2>(xs, ws, K, ys, j);
        else MicroKernel<1, 1>(xs, ws, K, ys, j);
      }
      i += T;
    }
  }
}

// x[n, K] with every block of 16 reordered as LoadW16 widens bf16: [0..3, 8..11, 4..7, 12..15]; the
// tail past the last full block stays in place.
std::vector<float> PermuteForBf16(const float* x, int64_t n, int64_t K) {
  std::vector<float> out(static_cast<size_t>(n * K));
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * K;
    float* oi = out.data() + i * K;
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 a = _mm256_loadu_ps(xi + k), b = _mm256_loadu_ps(xi + k + 8);
      _mm256_storeu_ps(oi + k, _mm256_permute2f128_ps(a, b, 0x20));
      _mm256_storeu_ps(oi + k + 8, _mm256_permute2f128_ps(a, b, 0x31));
    }
    for (; k < K; ++k) oi[k] = xi[k];
  }
  return out;
}

}  // namespace

void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool) {
  const int64_t M = w.rows(), K = w.cols();
  std::vector<float> xp;
  if (w.type() == WeightType::kBF16) xp = PermuteForBf16(x, n, K);
  auto body = [&](int64_t j0, int64_t j1) {
    if (w.type() == WeightType::kBF16) MatmulRows(xp.data(), n, w.bf16(), K, M, y, j0, j1);
    else MatmulRows(x, n, w.f32(), K, M, y, j0, j1);
  };
  // Waking threads costs microseconds: small products run on the calling thread. Which thread computes a
  // row never changes its arithmetic, so this does not affect results.
  constexpr int64_t kMinParallelMacs = int64_t{1} << 18;
  if (pool && M * K * n >= kMinParallelMacs) pool->ParallelFor(M, 16, body);
  else body(0, M);
}

}  // namespace layerskip::cpu
