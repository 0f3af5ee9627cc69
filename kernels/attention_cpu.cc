// Causal GQA attention on the CPU. Per query (token, head), in a fixed order whatever the batch:
//   score[p] = DotF32(q, K[p]) * scale for p = 0 .. len-1   (kernels/simd.h's order; keys in blocks of 8
//              whose 8 sums finish at once with HorizontalSum8, bit for bit DotF32's HorizontalSum; the
//              last len % 8 keys one at a time)
//   w[p] = exp(score[p] - max) (kernels/exp_simd.h), sum = 16 lanes (lane i: the p % 16 == i, ascending),
//          then HorizontalSum(lanes 0-7 + lanes 8-15)
//   o = 0; o = fma(w[p], V[p], o) for p ascending; o = o * (1 / sum)
// So a query's output is the same bits alone or in a batch, on any thread.
//
// Three loop nests compute exactly that. AttentionPerQuery runs one query at a time over all its keys (the
// reference). Attention works on tiles: the queries of up to max(1, kTileQueries / group) tokens of one
// sequence times the `group` query heads that share one KV head (64 queries, so the scores take 64 rows at
// most whatever the group). On the avx2 path (and head sizes the AVX-512 tile does not take) TileAvx2
// computes the scores block of 8 keys by block of 8 keys, every query of the tile on a block before the next
// block (the block's K stays in L1), then each query's softmax, then sums V in blocks of kVBlock keys, every
// query of the tile on a block before the next (its accumulators stored to `out` between blocks and
// reloaded: exact). On the AVX-512 paths kernels/attention_avx512_cpu.cc runs the tile with register tiles
// of queries x keys, the same operations per query. For each query the keys it reads, the dot products, the
// max, the exp sum and the V additions are the same operations in the same order as in AttentionPerQuery;
// only which query runs between them changes. A decode step is a tile of one token's group of heads.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/attention_tile.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_simd.h"
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

constexpr int kTileQueries = 64;  // queries per tile: max(1, 64 / group) tokens x the group's query heads
constexpr int kVBlock = 32;      // keys per block of V (32 * head_dim floats: L1-resident)

// o[0..HD) = (first ? 0 : o) + sum over p in [p0, p1) of w[p] * v[p] (ascending), in registers. HD % 8 == 0.
template <int HD>
inline void WeightedSumV(const float* w, int p0, int p1, const float* vbase, int64_t stride, float* o, bool first) {
  __m256 acc[HD / 8];
  for (int i = 0; i < HD / 8; ++i) acc[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(o + 8 * i);
  for (int p = p0; p < p1; ++p) {
    const __m256 wv = _mm256_set1_ps(w[p]);
    const float* vp = vbase + p * stride;
    for (int i = 0; i < HD / 8; ++i) acc[i] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(vp + 8 * i), acc[i]);
  }
  for (int i = 0; i < HD / 8; ++i) _mm256_storeu_ps(o + 8 * i, acc[i]);
}

// The same for any head_dim (o in memory; a scalar tail past the last 8).
inline void WeightedSumVAny(const float* w, int p0, int p1, const float* vbase, int64_t stride, int hd, float* o,
                            bool first) {
  if (first)
    for (int d = 0; d < hd; ++d) o[d] = 0.0f;
  for (int p = p0; p < p1; ++p) {
    const float wp = w[p];
    const float* vp = vbase + p * stride;
    const __m256 wv = _mm256_set1_ps(wp);
    int d = 0;
    for (; d + 8 <= hd; d += 8)
      _mm256_storeu_ps(o + d, _mm256_fmadd_ps(wv, _mm256_loadu_ps(vp + d), _mm256_loadu_ps(o + d)));
    for (; d < hd; ++d) o[d] = std::fma(wp, vp[d], o[d]);
  }
}

inline void WeightedSumBlock(const float* w, int p0, int p1, const float* vbase, int64_t stride, int hd, float* o,
                             bool first) {
  if (hd == 64) WeightedSumV<64>(w, p0, p1, vbase, stride, o, first);
  else if (hd == 128) WeightedSumV<128>(w, p0, p1, vbase, stride, o, first);
  else WeightedSumVAny(w, p0, p1, vbase, stride, hd, o, first);
}

// Scores of keys [p0, min(p0 + 8, len)) for one query: a whole block of 8 with Dot8 (hd % 16 == 0), the
// keys of a partial last block one at a time. Called with p0 = 0, 8, 16, ... it splits the keys exactly as
// one pass over [0, len) in steps of 8 followed by a single-key tail.
inline void ScoreBlock(const float* q, const float* kbase, int64_t stride, int hd, int p0, int len, float* scores) {
  if (hd % 16 == 0 && p0 + 8 <= len) return Dot8(q, kbase + p0 * stride, stride, hd, scores + p0);
  for (int p = p0; p < std::min(p0 + 8, len); ++p) scores[p] = DotF32(q, kbase + p * stride, hd);
}

// scores[0..len) = exp(score * scale - max) in place (kernels/exp_simd.h); returns 1 / their sum. The max
// is taken 8 lanes at a time: without NaNs it is the same value in any order (a +0/-0 tie changes no
// difference below); a NaN score makes every output NaN whichever max is found. The sum: 16 lanes, lane i
// adding the w[p] with p % 16 == i in ascending p (acc0: lanes 0-7, acc1: lanes 8-15; a last partial block
// of 8 adds zeros past len), then HorizontalSum(acc0 + acc1) -- the order a 16-lane AVX-512 loop has too.
inline float Softmax(float* scores, int len, float scale) {
  const __m256 sv = _mm256_set1_ps(scale);
  __m256 mv = _mm256_set1_ps(-INFINITY);
  int p = 0;
  for (; p + 8 <= len; p += 8) {
    const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(scores + p), sv);
    _mm256_storeu_ps(scores + p, x);
    mv = _mm256_max_ps(mv, x);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mv);
  float max_score = -INFINITY;
  for (float l : lanes) max_score = std::max(max_score, l);
  for (; p < len; ++p) {
    scores[p] = scores[p] * scale;
    max_score = std::max(max_score, scores[p]);
  }
  const __m256 m = _mm256_set1_ps(max_score);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (p = 0; p + 8 <= len; p += 8) {
    const __m256 w = Exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), m));
    _mm256_storeu_ps(scores + p, w);
    acc[(p >> 3) & 1] = _mm256_add_ps(acc[(p >> 3) & 1], w);
  }
  if (p < len) {
    const int left = len - p;
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 w = _mm256_and_ps(Exp8(_mm256_sub_ps(LoadPartial8(scores + p, left), m)), _mm256_castsi256_ps(keep));
    StorePartial8(scores + p, left, w);
    acc[(p >> 3) & 1] = _mm256_add_ps(acc[(p >> 3) & 1], w);
  }
  return 1.0f / HorizontalSum(_mm256_add_ps(acc[0], acc[1]));
}

inline void Scale(float* o, int hd, float inv) {
  for (int d = 0; d < hd; ++d) o[d] *= inv;
}

// Sum of (positions + 1) * heads * head_dim * 2 (~ multiply-adds): small batches stay on the calling thread.
bool WorthThreads(const int* positions, int64_t n, int heads, int hd, ThreadPool* pool) {
  int64_t work = 0;
  for (int64_t i = 0; i < n; ++i) work += static_cast<int64_t>(positions[i] + 1) * heads * hd * 2;
  return pool != nullptr && work >= (int64_t{1} << 16);
}

}  // namespace

void AttentionPerQuery(const float* q, int64_t n, const int* slots, const int* positions, int heads,
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
      for (int p = 0; p < len; p += 8) ScoreBlock(qi, kbase, pos_stride, hd, p, len, scores.data());
      const float inv = Softmax(scores.data(), len, scale);
      float* o = out + (i * heads + h) * hd;
      WeightedSumBlock(scores.data(), 0, len, vbase, pos_stride, hd, o, true);
      Scale(o, hd, inv);
    }
  };
  if (WorthThreads(positions, n, heads, hd, pool)) pool->ParallelFor(n * heads, 1, body);
  else body(0, n * heads);
}

namespace {

// The tile on AVX2 (the loop the header comment describes).
void TileAvx2(const AttentionTile& t) {
  const int hd = t.hd, queries = t.Queries();
  int max_len = 0;
  for (int j = 0; j < queries; j += t.group) max_len = std::max(max_len, t.Len(j));
  const int64_t row = max_len + 8;  // scores per query (Dot8 writes whole blocks)
  thread_local std::vector<float> scores, inv;
  scores.resize(static_cast<size_t>(queries * row));
  inv.resize(static_cast<size_t>(queries));
  for (int p0 = 0; p0 < max_len; p0 += 8)
    for (int j = 0; j < queries; ++j) {
      const int len = t.Len(j);
      if (p0 < len) ScoreBlock(t.q + t.Row(j), t.kbase, t.pos_stride, hd, p0, len, scores.data() + j * row);
    }
  for (int j = 0; j < queries; ++j) inv[j] = Softmax(scores.data() + j * row, t.Len(j), t.scale);
  for (int p0 = 0; p0 < max_len; p0 += kVBlock)
    for (int j = 0; j < queries; ++j) {
      const int len = t.Len(j);
      if (p0 < len)
        WeightedSumBlock(scores.data() + j * row, p0, std::min(p0 + kVBlock, len), t.vbase, t.pos_stride, hd,
                         t.out + t.Row(j), p0 == 0);
    }
  for (int j = 0; j < queries; ++j) Scale(t.out + t.Row(j), hd, inv[j]);
}

}  // namespace

void Attention(const float* q, int64_t n, const int* slots, const int* positions, int heads,
               const KvLayerView& kv, float* out, ThreadPool* pool) {
  const int hd = kv.head_dim, kvh_count = kv.kv_heads;
  const int group = heads / kv.kv_heads;
  // Tiles: runs of consecutive tokens of one slot, cut every tile_tokens tokens. first[t] .. first[t + 1].
  const int tile_tokens = std::max(1, kTileQueries / group);
  std::vector<int64_t> first;
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || slots[i] != slots[i - 1] || i - first.back() == tile_tokens) first.push_back(i);
  first.push_back(n);
  const int64_t tiles = static_cast<int64_t>(first.size()) - 1;
  const bool wide = ActiveCpuKernels() != CpuKernels::kAvx2 && avx512::AttentionTileSupports(hd);

  // One task: a tile and a KV head. Queries of the tile: token-major, then the group's heads.
  auto task = [&](int64_t item) {
    // The latest tiles of a prompt have the most keys: they go first, so the small ones fill in at the end.
    const int64_t tile = tiles - 1 - item / kvh_count;
    AttentionTile t;
    t.q = q;
    t.out = out;
    t.positions = positions;
    t.pos_stride = static_cast<int64_t>(kv.kv_heads) * hd;
    t.i0 = first[tile];
    t.i1 = first[tile + 1];
    t.heads = heads;
    t.group = group;
    t.kvh = static_cast<int>(item % kvh_count);
    t.hd = hd;
    t.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    t.kbase = kv.k + slots[t.i0] * kv.slot_stride + t.kvh * hd;
    t.vbase = kv.v + slots[t.i0] * kv.slot_stride + t.kvh * hd;
    if (wide) avx512::RunAttentionTile(t);
    else TileAvx2(t);
  };
  const int64_t tasks = tiles * kvh_count;
  if (WorthThreads(positions, n, heads, hd, pool)) pool->ParallelTasks(tasks, task);
  else
    for (int64_t item = 0; item < tasks; ++item) task(item);
}

}  // namespace layerskip::cpu
