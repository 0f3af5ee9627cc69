// y[n, M] = x[n, K] @ W[M, K]^T with int8 W on the CPU: scalar reference, AVX2, and AVX-512 VNNI, chosen at
// run time (BestInt8Path).
//
// Activations: each token's x is quantised in groups of 32 columns (the weights' groups): xs = max|x| / 127,
// xq = nearbyint(x * (127 / max|x|)) (0 and xs = 0 for an all-zero group), laid out like the weights
// (Int8Position) and zero-padded to the weights' padded width. Per token, so a token's xq never depends on
// the batch.
//
// Arithmetic (the same for every output y[t, j], on every path, whatever n, tile or thread computes it):
//   lane[g] = 0 for g = 0..7                                   (an 8-lane f32 vector)
//   for each block b of 256 columns, ascending:
//     isum[g] = sum over the 32 columns of group 8b+g of wq * xq   (exact int32: |isum| <= 32*127*127)
//     lane[g] = fma(float(isum[g]), ws[8b+g] * xs[8b+g], lane[g])    (the scale product rounded to f32 first)
//   y[t, j] = HorizontalSum(lane)                             (kernels/simd.h: fixed tree)
// The int32 sums are exact, so how a path forms them (VNNI vpdpbusd on the +128-offset bytes minus 128 * the
// group's sum of xq, or AVX2 maddubs on |w| and sign-adjusted x) never changes a bit; nor does which lanes
// of a register hold a row's f32 steps (VNNI keeps two rows in one 16-lane vector: per lane the same
// multiply and fma).
//
// Schedule: rows in blocks of about kBlockBytes of W that threads claim from a shared counter; in a block,
// tokens in groups of the path's kTokens (4 on VNNI, 2 otherwise; then 3, 2, 1 for the rest) pass over
// register tiles of R rows x T tokens.
#include "kernels/matmul_int8_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/simd.h"

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on _mm512_extracti64x4_epi64 (an undefined merge source).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same for _mm512_castpd256_pd512 (undefined upper half)

#define LS_TARGET_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace layerskip::cpu {
namespace {

constexpr int64_t kBlockBytes = 64 << 10;  // W bytes per row block

// The activations of one call, quantised: q [n, Kp] int8, scale [n, G] f32, corr [n, G] int32 (-128 * the
// group's sum of q: the VNNI path starts its int32 sums there, which removes the +128 offset of W). G = Kp / 32.
struct QuantizedX {
  const int8_t* q;
  const float* scale;
  const int32_t* corr;
  int64_t Kp, G;
};

// A 64-byte aligned byte buffer that only grows (one per thread: no allocation per call).
class AlignedBytes {
 public:
  ~AlignedBytes() { std::free(data_); }
  void* Get(size_t bytes) {
    if (bytes > size_ || data_ == nullptr) {
      std::free(data_);
      size_ = bytes;
      data_ = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
      if (data_ == nullptr) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// One full group of 32 activations x[0..32) with AVX2, the same bits as the scalar loop in
// QuantizeActivations: the max of |x| (exact in any order), one division, x * inv rounded to the nearest
// integer, ties to even (nearbyint in the default rounding mode), the int32 sum exact. Writes the 8 words of
// 4 columns to qg[c * 32] (the layout's stride between chunks); returns false (nothing written) if an x is
// not finite or max |x| < 1e-30 (left to the scalar loop).
bool QuantizeGroup32(const float* x, int8_t* qg, float* scale, int32_t* corr) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), inf = _mm256_set1_ps(INFINITY);
  __m256 v[4], amax = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_and_ps(v[i], abs_mask);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));  // false for inf and NaN
    amax = _mm256_max_ps(amax, a);
  }
  if (_mm256_movemask_ps(finite) != 0xff) return false;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  float m = 0.0f;
  for (float l : lanes) m = std::max(m, l);
  if (m < 1e-30f) return false;  // zero, or so small that 127 / m overflows: the scalar loop's cases
  const __m256 inv = _mm256_set1_ps(127.0f / m);
  __m256i qi[4], sum = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    qi[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    sum = _mm256_add_epi32(sum, qi[i]);
  }
  // int32 -> int8 (|q| <= 127: no saturation); the packs interleave 128-bit lanes, the permute restores order.
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
  alignas(32) int32_t words[8], sums[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(words), _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(sums), sum);
  for (int c = 0; c < 8; ++c) std::memcpy(qg + c * 32, &words[c], 4);
  int32_t total = 0;
  for (int32_t s : sums) total += s;
  *scale = m / 127.0f;
  *corr = -128 * total;
  return true;
}

// Quantises token rows x[n, K] into q/scale/corr (see the file comment). `vector`: full groups with
// QuantizeGroup32 (the same bits; the scalar path keeps the plain loop as the reference).
void QuantizeActivations(const float* x, int64_t n, int64_t K, int64_t Kp, int8_t* q, float* scale, int32_t* corr,
                         bool vector) {
  const int64_t G = Kp / kInt8Group;
  std::memset(q, 0, static_cast<size_t>(n * Kp));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * K;
    int8_t* qt = q + t * Kp;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t k0 = g * kInt8Group, k1 = std::min(K, k0 + kInt8Group);
      if (vector && k1 - k0 == kInt8Group &&
          QuantizeGroup32(xt + k0, qt + Int8Position(k0), scale + t * G + g, corr + t * G + g))
        continue;
      float amax = 0.0f;
      bool finite = true;
      for (int64_t k = k0; k < k1; ++k) {
        amax = std::max(amax, std::fabs(xt[k]));
        finite = finite && std::isfinite(xt[k]);
      }
      int32_t sum = 0;
      if (amax > 0.0f && finite) {
        const float inv = 127.0f / amax;
        for (int64_t k = k0; k < k1; ++k) {
          const int v = static_cast<int>(std::nearbyint(xt[k] * inv));
          qt[Int8Position(k)] = static_cast<int8_t>(v);
          sum += v;
        }
        scale[t * G + g] = amax / 127.0f;
      } else {
        scale[t * G + g] = finite ? 0.0f : NAN;  // a non-finite activation poisons its outputs, as in f32
      }
      corr[t * G + g] = -128 * sum;
    }
  }
}

struct Problem {
  QuantizedX x;
  int64_t n, M;
  const uint8_t* w;   // [M, Kp]
  const float* ws;    // [M, G]
  float* y;           // [n, M]
  int64_t block_rows;
};

// Scalar reference: one output at a time, in exactly the order of the file comment.
struct ScalarPath {
  static constexpr int kTokens = 2;
  template <int R, int T>
  static void Tile(const Problem& p, int64_t j0, int64_t t0) {
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        const uint8_t* w = p.w + (j0 + r) * p.x.Kp;
        const int8_t* xq = p.x.q + (t0 + t) * p.x.Kp;
        const float* wsc = p.ws + (j0 + r) * p.x.G;
        const float* xsc = p.x.scale + (t0 + t) * p.x.G;
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t b = 0; b < p.x.Kp / kInt8Block; ++b) {
          int32_t isum[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (int64_t i = 0; i < kInt8Block; ++i) {
            const int64_t pos = b * kInt8Block + i;
            isum[(i / 4) % 8] += (static_cast<int32_t>(w[pos]) - 128) * static_cast<int32_t>(xq[pos]);
          }
          for (int g = 0; g < 8; ++g)
            lane[g] = std::fma(static_cast<float>(isum[g]), wsc[b * 8 + g] * xsc[b * 8 + g], lane[g]);
        }
        p.y[(t0 + t) * p.M + j0 + r] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
      }
  }
};

// y[t0 + t, j0 + r] = HorizontalSum(lane[r * T + t]) for an R x T tile, 8 at a time with HorizontalSum8 (bit for
// bit HorizontalSum).
template <int R, int T>
inline void FinishTile(const __m256* lane, const Problem& p, int64_t j0, int64_t t0) {
  constexpr int kOut = (R * T + 7) / 8 * 8;
  __m256 fin[kOut];
  for (int i = 0; i < R * T; ++i) fin[i] = lane[i];
  for (int i = R * T; i < kOut; ++i) fin[i] = _mm256_setzero_ps();
  alignas(32) float sums[kOut];
  for (int i = 0; i < kOut; i += 8) _mm256_store_ps(sums + i, HorizontalSum8(fin + i));
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) p.y[(t0 + t) * p.M + j0 + r] = sums[r * T + t];
}

// AVX2: per 32-byte chunk, maddubs(|w|, x * sign(w)) (pairs <= 2 * 127 * 127, no saturation), then pairs
// summed to int32 by madd with ones.
struct Avx2Path {
  static constexpr int kTokens = 2;  // 4 rows x 2 tokens: 8 int32 and 8 f32 accumulators (16 registers)
  template <int R, int T>
  static void Tile(const Problem& p, int64_t j0, int64_t t0) {
    const __m256i ones = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const uint8_t* w[R];
    const float* wsc[R];
    for (int r = 0; r < R; ++r) w[r] = p.w + (j0 + r) * p.x.Kp, wsc[r] = p.ws + (j0 + r) * p.x.G;
    const int8_t* xq[T];
    const float* xsc[T];
    for (int t = 0; t < T; ++t) xq[t] = p.x.q + (t0 + t) * p.x.Kp, xsc[t] = p.x.scale + (t0 + t) * p.x.G;
    __m256 lane[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) lane[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < p.x.Kp / kInt8Block; ++b) {
      __m256i acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const int64_t off = b * kInt8Block + c * 32;
        __m256i xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + off));
        for (int r = 0; r < R; ++r) {
          const __m256i ws = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r] + off)), bias);
          const __m256i aw = _mm256_abs_epi8(ws);
          for (int t = 0; t < T; ++t) {
            const __m256i prod = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[t], ws));
            acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(prod, ones));
          }
        }
      }
      for (int r = 0; r < R; ++r) {
        const __m256 wv = _mm256_loadu_ps(wsc[r] + b * 8);
        for (int t = 0; t < T; ++t) {
          const __m256 sc = _mm256_mul_ps(wv, _mm256_loadu_ps(xsc[t] + b * 8));
          lane[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), sc, lane[r][t]);
        }
      }
    }
    FinishTile<R, T>(&lane[0][0], p, j0, t0);
  }
};

// AVX-512 VNNI: per 64-byte chunk (two 32-byte chunks), vpdpbusd of the +128-offset W bytes (unsigned) with
// xq (signed), into int32 sums that start at -128 * sum(xq) of each group (lanes 0-7; lanes 8-15 at 0); the
// two 256-bit halves then add up to the exact group sums. The f32 steps run on two rows at once: rows r and
// r + 1 of a token share one 16-lane vector (lanes 0-7 row r, 8-15 row r + 1), each lane the same multiply
// and fma as an 8-lane one. Up to 4 rows x 4 tokens per tile: each loaded W chunk serves 4 tokens.
struct VnniPath {
  static constexpr int kTokens = 4;

  // [lo(a) + hi(a), lo(b) + hi(b)]: the halves of two rows' int32 sums added, the rows side by side.
  LS_TARGET_VNNI static __m512i FoldPair(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xEE));
  }
  LS_TARGET_VNNI static __m512 Join(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
  }
  LS_TARGET_VNNI static __m256 High(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

  template <int R, int T>
  LS_TARGET_VNNI static void Tile(const Problem& p, int64_t j0, int64_t t0) {
    constexpr int P = (R + 1) / 2;  // row pairs (the last one half used when R is odd)
    const uint8_t* w[R];
    const float* wsc[R];
    for (int r = 0; r < R; ++r) w[r] = p.w + (j0 + r) * p.x.Kp, wsc[r] = p.ws + (j0 + r) * p.x.G;
    const int8_t* xq[T];
    const float* xsc[T];
    const int32_t* corr[T];
    for (int t = 0; t < T; ++t) {
      xq[t] = p.x.q + (t0 + t) * p.x.Kp, xsc[t] = p.x.scale + (t0 + t) * p.x.G;
      corr[t] = p.x.corr + (t0 + t) * p.x.G;
    }
    __m512 lane[P][T];
    for (int r = 0; r < P; ++r)
      for (int t = 0; t < T; ++t) lane[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < p.x.Kp / kInt8Block; ++b) {
      __m512i acc[R][T];
      for (int t = 0; t < T; ++t) {
        const __m512i start = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr[t] + b * 8)));
        for (int r = 0; r < R; ++r) acc[r][t] = start;
      }
      for (int c = 0; c < 4; ++c) {
        const int64_t off = b * kInt8Block + c * 64;
        __m512i xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_si512(xq[t] + off);
        for (int r = 0; r < R; ++r) {
          const __m512i wv = _mm512_loadu_si512(w[r] + off);
          for (int t = 0; t < T; ++t) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv, xv[t]);
        }
      }
      __m512 xs[T];
      for (int t = 0; t < T; ++t) {
        const __m256 one = _mm256_loadu_ps(xsc[t] + b * 8);
        xs[t] = Join(one, one);
      }
      for (int r = 0; r < P; ++r) {
        const int r1 = 2 * r + 1 < R ? 2 * r + 1 : 2 * r;  // an odd R's last pair repeats its row
        const __m512 wv = Join(_mm256_loadu_ps(wsc[2 * r] + b * 8), _mm256_loadu_ps(wsc[r1] + b * 8));
        for (int t = 0; t < T; ++t) {
          const __m512i isum = FoldPair(acc[2 * r][t], acc[r1][t]);
          lane[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(wv, xs[t]), lane[r][t]);
        }
      }
    }
    // The R x T horizontal sums 8 at a time (HorizontalSum8: bit for bit HorizontalSum), [t][r] order.
    constexpr int kOut = (R * T + 7) / 8 * 8;
    __m256 fin[kOut];
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) fin[t * R + r] = r % 2 == 0 ? _mm512_castps512_ps256(lane[r / 2][t]) : High(lane[r / 2][t]);
    for (int i = R * T; i < kOut; ++i) fin[i] = _mm256_setzero_ps();
    alignas(32) float sums[kOut];
    for (int i = 0; i < kOut; i += 8) _mm256_store_ps(sums + i, HorizontalSum8(fin + i));
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) p.y[(t0 + t) * p.M + j0 + r] = sums[t * R + r];
  }
};

// Rows [jb, j1) x tokens [t0, t0 + T): tiles of 4 rows, then 2, then 1.
template <typename Path, int T>
void TokenGroupPass(const Problem& p, int64_t jb, int64_t j1, int64_t t0) {
  int64_t j = jb;
  for (; j + 4 <= j1; j += 4) Path::template Tile<4, T>(p, j, t0);
  for (; j + 2 <= j1; j += 2) Path::template Tile<2, T>(p, j, t0);
  for (; j < j1; ++j) Path::template Tile<1, T>(p, j, t0);
}

template <typename Path>
void Run(Problem p, ThreadPool* pool) {
  p.block_rows = std::max<int64_t>(4, kBlockBytes / std::max<int64_t>(1, p.x.Kp) / 4 * 4);
  const int64_t blocks = (p.M + p.block_rows - 1) / p.block_rows;
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(1, std::memory_order_relaxed); b < blocks; b = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t jb = b * p.block_rows, j1 = std::min(p.M, jb + p.block_rows);
      int64_t t = 0;
      for (; t + Path::kTokens <= p.n; t += Path::kTokens) TokenGroupPass<Path, Path::kTokens>(p, jb, j1, t);
      if constexpr (Path::kTokens > 3)  // fewer than kTokens left
        if (p.n - t >= 3) TokenGroupPass<Path, 3>(p, jb, j1, t), t += 3;
      if (p.n - t >= 2) TokenGroupPass<Path, 2>(p, jb, j1, t), t += 2;
      if (t < p.n) TokenGroupPass<Path, 1>(p, jb, j1, t);
    }
  };
  // Small products run on the calling thread (waking threads costs microseconds); which thread computes a
  // row never changes its arithmetic.
  constexpr int64_t kMinParallelMacs = int64_t{1} << 18;
  if (pool && pool->num_threads() > 1 && blocks > 1 && p.M * p.x.Kp * p.n >= kMinParallelMacs)
    pool->ParallelFor(pool->num_threads(), 1, worker);
  else worker(0, 1);
}

}  // namespace

const char* Int8PathName(Int8Path p) {
  switch (p) {
    case Int8Path::kScalar: return "scalar";
    case Int8Path::kAvx2: return "avx2";
    case Int8Path::kAvx512Vnni: return "avx512-vnni";
  }
  return "?";
}

bool Int8PathSupported(Int8Path p) {
  switch (p) {
    case Int8Path::kScalar: return true;
    case Int8Path::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Int8Path::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Int8Path BestInt8Path() {
  static const Int8Path best = [] {
    const char* force = std::getenv("LAYERSKIP_INT8_PATH");  // "avx2" or "scalar": tests and comparisons
    if (force != nullptr && std::strcmp(force, "avx2") == 0) return Int8Path::kAvx2;
    if (force != nullptr && std::strcmp(force, "scalar") == 0) return Int8Path::kScalar;
    return Int8PathSupported(Int8Path::kAvx512Vnni) ? Int8Path::kAvx512Vnni : Int8Path::kAvx2;
  }();
  return best;
}

void MatmulInt8(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool, Int8Path path) {
  const int64_t M = w.rows(), K = w.cols(), Kp = w.int8_stride(), G = Kp / kInt8Group;
  if (n <= 0 || M <= 0) return;
  thread_local AlignedBytes qbuf, sbuf, cbuf;
  int8_t* q = static_cast<int8_t*>(qbuf.Get(static_cast<size_t>(n * Kp)));
  float* scale = static_cast<float*>(sbuf.Get(static_cast<size_t>(n * G) * sizeof(float)));
  int32_t* corr = static_cast<int32_t*>(cbuf.Get(static_cast<size_t>(n * G) * sizeof(int32_t)));
  QuantizeActivations(x, n, K, Kp, q, scale, corr, path != Int8Path::kScalar);
  const Problem p{QuantizedX{q, scale, corr, Kp, G}, n, M, w.int8(), w.scales(), y, 0};
  switch (path) {
    case Int8Path::kScalar: return Run<ScalarPath>(p, pool);
    case Int8Path::kAvx2: return Run<Avx2Path>(p, pool);
    case Int8Path::kAvx512Vnni: return Run<VnniPath>(p, pool);
  }
}

}  // namespace layerskip::cpu
