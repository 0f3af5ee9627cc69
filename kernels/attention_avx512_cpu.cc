// One attention tile (kernels/attention_tile.h) on AVX-512 F/BW/VL/DQ, the same bits as the AVX2 loop in
// kernels/attention_cpu.cc, with every value computed by the same operations in the same order:
//   score: one 16-lane accumulator per (query, key) is DotF32's pair of 8-lane accumulators side by side
//          (hd % 16 == 0); its sum is HorizontalSum(lo + hi), done for 16 accumulators at once (Reduce16).
//          Register tiles of 4 queries x 4 keys (2 x 8, 1 x 16 for the tile's last queries) share the
//          loads of q and K; keys past a group's shortest row one at a time (Dot1).
//   softmax: 16 lanes, lane i summing the keys p % 16 == i (AVX2 keeps them in two 8-lane halves), the
//          same vector exp (kernels/exp_avx512.h spells kernels/exp_simd.h's operations for 16 lanes).
//   PV: o = fma(w[p], V[p], o) in ascending p, 4 (hd <= 64) or 2 queries sharing each V row's loads.
// Compiled for AVX-512 by the target pragma below only; everything else in the binary stays AVX2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/aligned_buffer.h"
#include "kernels/attention_tile.h"
#include "kernels/exp_simd.h"
#include "kernels/simd.h"

// Every header is included above this line (kernels/matmul_avx512_cpu.cc says why).
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

// HorizontalSum(lo256 + hi256) of one accumulator: DotF32's final sum.
inline float Sum16(__m512 v) {
  const __m256 f = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0x0E)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane k of the result is Sum16(v[k]), bit for bit: each level adds the same pairs as Sum16's, with
// shuffles that bring four (then eight, sixteen) accumulators' pairs side by side.
inline __m512 Reduce16(const __m512* v) {
  __m512 w[4];
  for (int t = 0; t < 4; ++t) {
    // lo256 + hi256 of v[t] | of v[t + 4], and of v[t + 8] | v[t + 12].
    const __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(v[t], v[t + 4], 0x44), _mm512_shuffle_f32x4(v[t], v[t + 4], 0xEE));
    const __m512 u1 =
        _mm512_add_ps(_mm512_shuffle_f32x4(v[t + 8], v[t + 12], 0x44), _mm512_shuffle_f32x4(v[t + 8], v[t + 12], 0xEE));
    // lo128 + hi128 of each: 128-bit lane L holds v[t + 4L]'s four partial sums.
    w[t] = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, 0x88), _mm512_shuffle_f32x4(u0, u1, 0xDD));
  }
  // (s0 + s2, s1 + s3) of w[0], w[1] and of w[2], w[3]; then their two halves.
  const __m512 z0 = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 z1 = _mm512_add_ps(_mm512_shuffle_ps(w[2], w[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(w[2], w[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// DotF32(q, k, 16 * NV).
template <int NV>
inline float Dot1(const float* q, const float* k) {
  __m512 acc = _mm512_setzero_ps();
  for (int s = 0; s < NV; ++s) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + 16 * s), _mm512_loadu_ps(k + 16 * s), acc);
  return Sum16(acc);
}

// Scores of QQ queries (rows qs, scores rows sc) over keys [p0, p0 + 16 / QQ).
template <int NV, int QQ>
inline void QkBlock(const float* const* qs, const float* kbase, int64_t stride, int p0, float* const* sc) {
  constexpr int KK = 16 / QQ;
  __m512 acc[16];
  for (int a = 0; a < 16; ++a) acc[a] = _mm512_setzero_ps();
  const float* k0 = kbase + p0 * stride;
  for (int s = 0; s < NV; ++s) {
    __m512 qv[QQ];
    for (int i = 0; i < QQ; ++i) qv[i] = _mm512_loadu_ps(qs[i] + 16 * s);
    for (int kk = 0; kk < KK; ++kk) {
      const __m512 kv = _mm512_loadu_ps(k0 + kk * stride + 16 * s);
      for (int i = 0; i < QQ; ++i) acc[i * KK + kk] = _mm512_fmadd_ps(qv[i], kv, acc[i * KK + kk]);
    }
  }
  alignas(64) float r[16];
  _mm512_store_ps(r, Reduce16(acc));
  for (int i = 0; i < QQ; ++i)
    for (int kk = 0; kk < KK; ++kk) sc[i][p0 + kk] = r[i * KK + kk];
}

// Scores of tile queries [j, j + QQ) for keys [b0, b1): blocks shared by all while every one has the keys,
// then each alone up to its causal end.
template <int NV, int QQ>
void QkGroup(const AttentionTile& t, int j, float* scores, int64_t row, int b0, int b1) {
  const float* qs[QQ];
  float* sc[QQ];
  int ends[QQ], common = b1;
  for (int i = 0; i < QQ; ++i) {
    qs[i] = t.q + t.Row(j + i);
    sc[i] = scores + (j + i) * row;
    ends[i] = std::min(b1, t.Len(j + i));
    common = std::min(common, ends[i]);
  }
  constexpr int KK = 16 / QQ;
  int p = b0;
  for (; p + KK <= common; p += KK) QkBlock<NV, QQ>(qs, t.kbase, t.pos_stride, p, sc);
  for (int i = 0; i < QQ; ++i)
    for (int pi = p; pi < ends[i]; ++pi) sc[i][pi] = Dot1<NV>(qs[i], t.kbase + pi * t.pos_stride);
}

// kernels/attention_cpu.cc's Softmax in 16 lanes: scores[0..len) = exp(score * scale - max); 1 / sum.
inline float Softmax16(float* scores, int len, float scale) {
  const __m512 sv = _mm512_set1_ps(scale);
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int p = 0; p < len; p += 16) {
    const __mmask16 m = len - p >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << (len - p)) - 1);
    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, scores + p), sv);
    _mm512_mask_storeu_ps(scores + p, m, x);
    mv = _mm512_mask_max_ps(mv, m, mv, x);
  }
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512 acc = _mm512_setzero_ps();
  for (int p = 0; p < len; p += 16) {
    const __mmask16 m = len - p >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << (len - p)) - 1);
    const __m512 w = _mm512_maskz_mov_ps(m, Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + p), mx)));
    _mm512_mask_storeu_ps(scores + p, m, w);
    acc = _mm512_add_ps(acc, w);
  }
  return 1.0f / Sum16(acc);
}

// Keys [b0, b1) of tile queries [j, j + QN): acc = fma(w[p], V[p], acc) in ascending p, acc starting at 0
// (b0 == 0) or at the out row where the previous block left it (exact); a query's last block stores
// acc * inv. Queries whose keys ended before b0 are left alone.
template <int NV, int QN>
void PvGroup(const AttentionTile& t, int j, const float* scores, int64_t row, const float* inv, int b0, int b1) {
  const float* w[QN];
  float* o[QN];
  int lens[QN], common = b1;
  for (int i = 0; i < QN; ++i) {
    w[i] = scores + (j + i) * row;
    o[i] = t.out + t.Row(j + i);
    lens[i] = t.Len(j + i);
    common = std::min(common, lens[i]);
  }
  __m512 acc[QN][NV];
  for (int i = 0; i < QN; ++i)
    for (int s = 0; s < NV; ++s)
      acc[i][s] = b0 == 0 || lens[i] <= b0 ? _mm512_setzero_ps() : _mm512_loadu_ps(o[i] + 16 * s);
  int p = b0;
  for (; p < common; ++p) {
    const float* vp = t.vbase + p * t.pos_stride;
    __m512 vv[NV];
    for (int s = 0; s < NV; ++s) vv[s] = _mm512_loadu_ps(vp + 16 * s);
    for (int i = 0; i < QN; ++i) {
      const __m512 wb = _mm512_set1_ps(w[i][p]);
      for (int s = 0; s < NV; ++s) acc[i][s] = _mm512_fmadd_ps(wb, vv[s], acc[i][s]);
    }
  }
  for (int i = 0; i < QN; ++i) {
    if (lens[i] <= b0) continue;
    const int end = std::min(b1, lens[i]);
    for (int pi = p; pi < end; ++pi) {
      const float* vp = t.vbase + pi * t.pos_stride;
      const __m512 wb = _mm512_set1_ps(w[i][pi]);
      for (int s = 0; s < NV; ++s) acc[i][s] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(vp + 16 * s), acc[i][s]);
    }
    if (end == lens[i]) {
      const __m512 iv = _mm512_set1_ps(inv[j + i]);
      for (int s = 0; s < NV; ++s) _mm512_storeu_ps(o[i] + 16 * s, _mm512_mul_ps(acc[i][s], iv));
    } else {
      for (int s = 0; s < NV; ++s) _mm512_storeu_ps(o[i] + 16 * s, acc[i][s]);
    }
  }
}

constexpr int kKeyBlock = 64;  // keys per block: 64 K or V rows of head_dim floats (16-32 KiB)

template <int NV>
void Tile(const AttentionTile& t) {
  const int queries = t.Queries();
  int max_len = 0;
  for (int j = 0; j < queries; j += t.group) max_len = std::max(max_len, t.Len(j));
  const int64_t row = (max_len + 15) / 16 * 16;
  thread_local AlignedBuffer<float> scores_buf, inv_buf;
  float* scores = scores_buf.Get(queries * row);
  float* inv = inv_buf.Get(queries);
  // Keys in blocks of kKeyBlock (their K or V rows stay in L1), every query of the tile on a block before the
  // next.
  for (int b0 = 0; b0 < max_len; b0 += kKeyBlock) {
    const int b1 = std::min(b0 + kKeyBlock, max_len);
    int j = 0;
    for (; j + 4 <= queries; j += 4) QkGroup<NV, 4>(t, j, scores, row, b0, b1);
    for (; j + 2 <= queries; j += 2) QkGroup<NV, 2>(t, j, scores, row, b0, b1);
    for (; j < queries; ++j) QkGroup<NV, 1>(t, j, scores, row, b0, b1);
  }
  for (int j = 0; j < queries; ++j) inv[j] = Softmax16(scores + j * row, t.Len(j), t.scale);
  for (int b0 = 0; b0 < max_len; b0 += kKeyBlock) {
    const int b1 = std::min(b0 + kKeyBlock, max_len);
    int j = 0;
    if constexpr (NV <= 4)
      for (; j + 4 <= queries; j += 4) PvGroup<NV, 4>(t, j, scores, row, inv, b0, b1);
    for (; j + 2 <= queries; j += 2) PvGroup<NV, 2>(t, j, scores, row, inv, b0, b1);
    for (; j < queries; ++j) PvGroup<NV, 1>(t, j, scores, row, inv, b0, b1);
  }
}

}  // namespace

bool AttentionTileSupports(int hd) { return hd % 16 == 0 && hd >= 16 && hd <= 128; }

void RunAttentionTile(const cpu::AttentionTile& t) {
  switch (t.hd / 16) {
    case 1: return Tile<1>(t);
    case 2: return Tile<2>(t);
    case 3: return Tile<3>(t);
    case 4: return Tile<4>(t);
    case 5: return Tile<5>(t);
    case 6: return Tile<6>(t);
    case 7: return Tile<7>(t);
    default: return Tile<8>(t);
  }
}

}  // namespace layerskip::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
