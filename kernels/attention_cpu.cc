#include <immintrin.h>

#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/simd.h"

namespace layerskip::cpu {

void Attention(const float* q, int64_t n, const int* slots, const int* positions, int heads,
               const KvLayerView& kv, float* out, ThreadPool* pool) {
  const int hd = kv.head_dim;
  const int group = heads / kv.kv_heads;
  const int64_t pos_stride = static_cast<int64_t>(kv.kv_heads) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / heads;
      const int h = static_cast<int>(item % heads);
      const int kvh = h / group;
      const int len = positions[i] + 1;
      const float* qi = q + (i * heads + h) * hd;
      const float* kbase = kv.k + slots[i] * kv.slot_stride + kvh * hd;
      const float* vbase = kv.v + slots[i] * kv.slot_stride + kvh * hd;
      scores.resize(len);
      float max_score = -INFINITY;
      for (int p = 0; p < len; ++p) {
        scores[p] = DotF32(qi, kbase + p * pos_stride, hd) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float sum = 0.0f;
      for (int p = 0; p < len; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        sum += scores[p];
      }
      float* o = out + (i * heads + h) * hd;
      for (int d = 0; d < hd; ++d) o[d] = 0.0f;
      for (int p = 0; p < len; ++p) {
        const float w = scores[p];
        const float* vp = vbase + p * pos_stride;
        int d = 0;
        const __m256 wv = _mm256_set1_ps(w);
        for (; d + 8 <= hd; d += 8)
          _mm256_storeu_ps(o + d, _mm256_add_ps(_mm256_loadu_ps(o + d), _mm256_mul_ps(wv, _mm256_loadu_ps(vp + d))));
        for (; d < hd; ++d) o[d] += w * vp[d];
      }
      const float inv = 1.0f / sum;
      for (int d = 0; d < hd; ++d) o[d] *= inv;
    }
  };
  int64_t work = 0;  // ~ multiply-adds: small batches run on the calling thread
  for (int64_t i = 0; i < n; ++i) work += static_cast<int64_t>(positions[i] + 1) * heads * hd * 2;
  if (pool && work >= (int64_t{1} << 17)) pool->ParallelFor(n * heads, 1, body);
  else body(0, n * heads);
}

}  // namespace layerskip::cpu
