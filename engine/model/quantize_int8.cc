// Symmetric per-group int8 quantisation of weight matrices.
#include "engine/model/quantize_int8.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

namespace layerskip {
namespace {

// Quantises one row of `cols` f32 values into `q` (Int8Position layout, +128) and `scales` (one per group).
// Full groups take the AVX2 path (vcvtps2dq rounds to nearest even, as nearbyint does in the default mode:
// the same bytes as the scalar path).
void QuantizeRow(const float* w, int64_t cols, uint8_t* q, float* scales) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 big = _mm256_set1_ps(std::numeric_limits<float>::max());
  for (int64_t g0 = 0; g0 < cols; g0 += kInt8Group) {
    const int64_t g1 = std::min(cols, g0 + kInt8Group);
    float amax = 0.0f;
    bool finite = true;
    if (g1 - g0 == kInt8Group) {  // max |w| of 32 values (exact: max is order-free), and all finite
      __m256 m = _mm256_setzero_ps(), ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
      for (int i = 0; i < 4; ++i) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(w + g0 + 8 * i), abs_mask);
        m = _mm256_max_ps(m, a);
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // false for inf and NaN
      }
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, m);
      for (float l : lanes) amax = std::max(amax, l);
      finite = _mm256_movemask_ps(ok) == 0xff;
    } else {
      for (int64_t k = g0; k < g1; ++k) {
        amax = std::max(amax, std::fabs(w[k]));
        finite = finite && std::isfinite(w[k]);
      }
    }
    if (!(amax > 0.0f) || !finite) {  // zero group (or a non-finite weight: the group is left at 0)
      scales[g0 / kInt8Group] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    scales[g0 / kInt8Group] = amax / 127.0f;
    if (g1 - g0 == kInt8Group) {
      // 4 x 8 values -> 32 int8 (+128) in column order; dword u (columns 4u..4u+3) goes to Int8Position(g0 + 4u).
      const __m256 vinv = _mm256_set1_ps(inv);
      __m256i v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + g0 + 8 * i), vinv));
      // packs work within 128-bit lanes: the permute restores column order.
      const __m256i s01 = _mm256_packs_epi32(v[0], v[1]), s23 = _mm256_packs_epi32(v[2], v[3]);
      __m256i b = _mm256_packs_epi16(s01, s23);
      b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      b = _mm256_add_epi8(b, _mm256_set1_epi8(static_cast<char>(0x80)));
      alignas(32) uint32_t dw[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(dw), b);
      for (int u = 0; u < 8; ++u) std::memcpy(q + Int8Position(g0 + 4 * u), &dw[u], 4);
      continue;
    }
    for (int64_t k = g0; k < g1; ++k) {
      const float v = std::nearbyint(w[k] * inv);  // |v| <= 127: amax * (127 / amax) < 127.5
      q[Int8Position(k)] = static_cast<uint8_t>(static_cast<int>(v) + 128);
    }
  }
}

}  // namespace

std::unique_ptr<Matrix> QuantizeInt8(int64_t rows, int64_t cols, const std::function<void(int64_t, float*)>& row,
                                     int threads) {
  auto m = std::make_unique<Matrix>(WeightType::kInt8, rows, cols);
  const int64_t stride = m->int8_stride(), groups = stride / kInt8Group;
  uint8_t* q = static_cast<uint8_t*>(m->data());
  float* scales = m->scales();
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      row(r, buf.data());
      QuantizeRow(buf.data(), cols, q + r * stride, scales + r * groups);
    }
  };
  const int64_t t = std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, rows / 64));
  if (t <= 1) {
    work(0, rows);
    return m;
  }
  std::vector<std::thread> pool;
  const int64_t per = (rows + t - 1) / t;
  for (int64_t i = 1; i < t; ++i) {
    const int64_t r0 = i * per, r1 = std::min(rows, r0 + per);
    if (r0 < r1) pool.emplace_back(work, r0, r1);
  }
  work(0, std::min(rows, per));
  for (auto& th : pool) th.join();
  return m;
}

void QuantizeLayersInt8(ModelWeights& w) {
  if (w.int8_layers) return;
  const unsigned hc = std::thread::hardware_concurrency();
  const int threads = static_cast<int>(std::clamp(hc == 0 ? 2u : hc, 1u, 16u));
  auto quantize = [&](std::unique_ptr<Matrix>& m) {
    if (!m) return;
    const Matrix& src = *m;
    m = QuantizeInt8(src.rows(), src.cols(), [&](int64_t r, float* out) {
      for (int64_t c = 0; c < src.cols(); ++c) out[c] = src.At(r, c);
    }, threads);
  };
  for (LayerWeights& l : w.layers)
    for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) quantize(*m);
  w.int8_layers = true;
}

}  // namespace layerskip
