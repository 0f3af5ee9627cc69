// Causal GQA attention on the CPU (AVX2). Per (token, head), in a fixed order whatever the batch:
//   score[p] = DotF32(q, K[p]) * scale for p = 0 .. len-1   (kernels/simd.h's order; keys in tiles of 8
//              whose 8 sums finish at once with HorizontalSum8, bit for bit DotF32's HorizontalSum)
//   w[p] = exp(score[p] - max), sum = w[0] + w[1] + ... (ascending)
//   o = 0; o = o + w[p] * V[p] for p ascending (rounded multiply, then add); o = o * (1 / sum)
// So a token's output is the same bits alone or in a batch, on any thread.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd.h"

namespace layerskip::cpu {
namespace {

// scores[j] = DotF32(q, k + j * stride, hd) for j < 8, with hd a multiple of 16: the two accumulators of
// each key as DotF32 builds them (4 keys at a time, to stay in registers), summed 8 at once.
inline void Dot8(const float* q, const float* k, int64_t stride, int hd, float* scores) {
  __m256 sums[8];
  for (int half = 0; half < 2; ++half) {
    const float* kk[4];
    for (int j = 0; j < 4; ++j) kk[j] = k + (half * 4 + j) * stride;
    __m256 a0[4], a1[4];
    for (int j = 0; j < 4; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 16) {
      const __m256 q0 = _mm256_loadu_ps(q + d), q1 = _mm256_loadu_ps(q + d + 8);
      for (int j = 0; j < 4; ++j) {
        a0[j] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(kk[j] + d), a0[j]);
        a1[j] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(kk[j] + d + 8), a1[j]);
      }
    }
    for (int j = 0; j < 4; ++j) sums[half * 4 + j] = _mm256_add_ps(a0[j], a1[j]);
  }
  _mm256_storeu_ps(scores, HorizontalSum8(sums));
}

// o[0..HD) = sum over p of w[p] * v[p] (ascending; o starts at 0), held in registers. HD % 8 == 0.
template <int HD>
inline void WeightedSumV(const float* w, int len, const float* vbase, int64_t stride, float* o) {
  __m256 acc[HD / 8];
  for (int i = 0; i < HD / 8; ++i) acc[i] = _mm256_setzero_ps();
  for (int p = 0; p < len; ++p) {
    const __m256 wv = _mm256_set1_ps(w[p]);
    const float* vp = vbase + p * stride;
    for (int i = 0; i < HD / 8; ++i) acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(wv, _mm256_loadu_ps(vp + 8 * i)));
  }
  for (int i = 0; i < HD / 8; ++i) _mm256_storeu_ps(o + 8 * i, acc[i]);
}

// The same for any head_dim (o in memory; a scalar tail past the last 8).
inline void WeightedSumVAny(const float* w, int len, const float* vbase, int64_t stride, int hd, float* o) {
  for (int d = 0; d < hd; ++d) o[d] = 0.0f;
  for (int p = 0; p < len; ++p) {
    const float wp = w[p];
    const float* vp = vbase + p * stride;
    const __m256 wv = _mm256_set1_ps(wp);
    int d = 0;
    for (; d + 8 <= hd; d += 8)
      _mm256_storeu_ps(o + d, _mm256_add_ps(_mm256_loadu_ps(o + d), _mm256_mul_ps(wv, _mm256_loadu_ps(vp + d))));
    for (; d < hd; ++d) o[d] += wp * vp[d];
  }
}

}  // namespace

void Attention(const float* q, int64_t n, const int* slots, const int* positions, int heads,
               const KvLayerView& kv, float* out, ThreadPool* pool) {
  const int hd = kv.head_dim;
  const int group = heads / kv.kv_heads;
  const int64_t pos_stride = static_cast<int64_t>(kv.kv_heads) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  auto body = [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / heads;
      const int h = static_cast<int>(item % heads);
      const int kvh = h / group;
      const int len = positions[i] + 1;
      const float* qi = q + (i * heads + h) * hd;
      const float* kbase = kv.k + slots[i] * kv.slot_stride + kvh * hd;
      const float* vbase = kv.v + slots[i] * kv.slot_stride + kvh * hd;
      scores.resize(static_cast<size_t>(len) + 8);
      int p = 0;
      if (hd % 16 == 0)
        for (; p + 8 <= len; p += 8) Dot8(qi, kbase + p * pos_stride, pos_stride, hd, scores.data() + p);
      for (; p < len; ++p) scores[p] = DotF32(qi, kbase + p * pos_stride, hd);
      float max_score = -INFINITY;
      for (p = 0; p < len; ++p) {
        scores[p] = scores[p] * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float sum = 0.0f;
      for (p = 0; p < len; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        sum += scores[p];
      }
      float* o = out + (i * heads + h) * hd;
      if (hd == 64) WeightedSumV<64>(scores.data(), len, vbase, pos_stride, o);
      else if (hd == 128) WeightedSumV<128>(scores.data(), len, vbase, pos_stride, o);
      else WeightedSumVAny(scores.data(), len, vbase, pos_stride, hd, o);
      const float inv = 1.0f / sum;
      for (int d = 0; d < hd; ++d) o[d] *= inv;
    }
  };
  int64_t work = 0;  // ~ multiply-adds: small batches run on the calling thread
  for (int64_t i = 0; i < n; ++i) work += static_cast<int64_t>(positions[i] + 1) * heads * hd * 2;
  if (pool && work >= (int64_t{1} << 16)) pool->ParallelFor(n * heads, 1, body);
  else body(0, n * heads);
}

}  // namespace layerskip::cpu
