// y[n, M] = x[n, K] @ W[M, K]^T on the CPU (AVX2 + FMA), W bf16 or f32 row-major.
//
// Arithmetic order (the same for every output y[t, j], whatever n, thread, tile or K block computes it):
//   acc0 = acc1 = 0                                    (two 8-lane f32 accumulators)
//   for each full block of 16 columns, k = 16b .. 16b+15, b ascending:
//     acc0 = fma(x0, w0, acc0), acc1 = fma(x1, w1, acc1)
//       f32 W:  w0 = W[j, 16b+0..7],               w1 = W[j, 16b+8..15]
//       bf16 W: w0 = W[j, 16b+{0..3, 8..11}],      w1 = W[j, 16b+{4..7, 12..15}]  (LoadW0, LoadW1)
//       x0, x1: the matching x[t, .] (bf16: x is permuted the same way beforehand, PermuteForBf16)
//   sum = HorizontalSum(acc0 + acc1)                    (fixed tree, kernels/simd.h; HorizontalSum8 is the
//                                                        same bits for 8 outputs at once)
//   for the tail k = 16*(K/16) .. K-1 ascending: sum = sum + x[t, k] * W[j, k]   (rounded mul, then add)
//   y[t, j] = sum
// Accumulators of a K block are stored and reloaded exactly between blocks, so K blocking, the register
// tile (R rows x T tokens) and the thread split never change a result's bits: y is batch-invariant.
//
// Schedule: rows are cut into row blocks of about kBlockBytes of W (48 rows of a 2048-wide bf16 matrix,
// 12 of an 8192-wide one) that threads claim from a shared counter, so a core slowed by other work simply
// does fewer. In a block, for each K block of at most kKBlock columns, tokens pass over the block's rows
// in pairs, in register tiles of 3 rows x 2 tokens (x of the pair, <= 16 KiB, stays in L1; the block's W
// in L2); an odd last token, and decoding (n = 1), use tiles of 4 rows x 1 token that prefetch their rows
// ahead. Every tile also prefetches one line of the thread's next row block into L2 per 64 columns, so
// reading W from memory overlaps the arithmetic of compute-bound batches.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_int8_cpu.h"
#include "kernels/simd.h"

namespace layerskip::cpu {
namespace {

constexpr int64_t kBlockBytes = 192 << 10;  // W bytes per row block (kept in L2 while all tokens pass)
constexpr int64_t kKBlock = 2048;    // columns per K block (a multiple of 16)
constexpr int kPrefetchBytes = 1024;  // distance of the in-row prefetch (1-token passes)

// The 16 weights at w as two f32 vectors (w0 = LoadW0(w), w1 = LoadW1(w)).
// f32: w0 = w[0..7], w1 = w[8..15].
// bf16: a 32-byte load widened by interleaving with zeros, which works within 128-bit lanes:
// w0 = w[0..3, 8..11], w1 = w[4..7, 12..15]. x is laid out the same way beforehand (PermuteForBf16), so
// the dot product is unchanged in value and the widening costs no shifts on the FMA ports.
inline __m256 LoadW0(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 LoadW1(const float* w) { return _mm256_loadu_ps(w + 8); }
inline __m256 LoadW0(const uint16_t* w) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
}
inline __m256 LoadW1(const uint16_t* w) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
}
inline float ScalarW(const uint16_t* w) { return Bf16ToF32(*w); }
inline float ScalarW(const float* w) { return *w; }

// Streams a byte range into L2, one cache line per Tick: the thread's next row block, a line every 64
// columns of the current block's tiles, so reading W from memory overlaps the arithmetic evenly (bursts
// would fill the line-fill buffers and stall the tiles' own loads). Past the end it re-touches the last
// line, which costs nothing and needs no branch.
class Prefetcher {
 public:
  Prefetcher(const void* begin, const void* end)
      : p_(static_cast<const char*>(begin)), end_(std::max(p_, static_cast<const char*>(end) - 64)) {}
  void Tick() {
    _mm_prefetch(p_, _MM_HINT_T1);
    p_ = std::min(p_ + 64, end_);
  }

 private:
  const char* p_;
  const char* end_;
};

// acc[r][t] = fma(x[t][k..k+8), w_r, acc[r][t]) for the R x T tile, w_r = load(ws[r] + k). Whichever of
// the weights (R) and the x vectors (T) are fewer stay in registers while the others stream through one
// register, so 2*R*T <= 12 accumulators + min(R, T) + 1 + the widening's zero fit the 16 registers.
template <int R, int T, typename W, typename Load>
inline void HalfBlock(__m256 (&acc)[R][T], const float* const* xs, const W* const* ws, int64_t k, Load load) {
  if constexpr (R <= T) {
    __m256 w[R];
    for (int r = 0; r < R; ++r) w[r] = load(ws[r] + k);
    for (int t = 0; t < T; ++t) {
      const __m256 x = _mm256_loadu_ps(xs[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(x, w[r], acc[r][t]);
    }
  } else {
    __m256 x[T];
    for (int t = 0; t < T; ++t) x[t] = _mm256_loadu_ps(xs[t] + k);
    for (int r = 0; r < R; ++r) {
      const __m256 w = load(ws[r] + k);
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(x[t], w, acc[r][t]);
    }
  }
}

// One register tile: rows ws[0..R) of W times tokens xs[0..T) of x over columns [k0, k1) (multiples of 16
// apart). acc[r * stride + t * 2 + h] holds accumulator h of (row r, token t): zeroed when first, else
// reloaded; stored back at the end. Each block of 16 columns is done in two halves (all w0 products, then
// all w1 products) so that the tile fits the 16 registers without spills (HalfBlock).
// InRowPrefetch: prefetch each row kPrefetchBytes ahead into L1 (memory-bound 1-token passes: rows are
// 4 KiB apart for a 2048-wide bf16 matrix and hardware prefetchers stop at page boundaries).
template <int R, int T, bool InRowPrefetch, typename W>
inline void Tile(const float* const* xs, const W* const* ws, int64_t k0, int64_t k1, bool first, __m256* acc,
                 int64_t stride, Prefetcher& pf) {
  __m256 a0[R][T], a1[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      a0[r][t] = first ? _mm256_setzero_ps() : acc[r * stride + t * 2];
      a1[r][t] = first ? _mm256_setzero_ps() : acc[r * stride + t * 2 + 1];
    }
  auto block = [&](int64_t k) {  // columns [k, k + 16)
    if constexpr (InRowPrefetch)
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(ws[r] + k) + kPrefetchBytes, _MM_HINT_T0);
    HalfBlock<R, T>(a0, xs, ws, k, [](const W* w) { return LoadW0(w); });
    // HalfBlock hands the load ws[r] + k + 8 (x's second half): the block still starts 8 earlier.
    HalfBlock<R, T>(a1, xs, ws, k + 8, [](const W* w) { return LoadW1(w - 8); });
  };
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) {  // one next-block line per 64 columns
    pf.Tick();
    for (int u = 0; u < 4; ++u) block(k + 16 * u);
  }
  for (; k < k1; k += 16) block(k);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      acc[r * stride + t * 2] = a0[r][t];
      acc[r * stride + t * 2 + 1] = a1[r][t];
    }
}

// The order's last two steps for outputs (t, j..j+7) of a row block: horizontal sums (8 at once, bit for
// bit HorizontalSum), then the scalar tail [k_end, K). acc: the block's [row - jb][n][2] accumulators, at
// (j, t). y: &y[t, j].
template <typename W>
inline void Finish8(const __m256* acc, int64_t n, const float* x, const W* w, int64_t k_end, int64_t K, float* y) {
  __m256 v[8];
  for (int q = 0; q < 8; ++q) v[q] = _mm256_add_ps(acc[q * n * 2], acc[q * n * 2 + 1]);
  _mm256_storeu_ps(y, HorizontalSum8(v));
  for (int q = 0; q < 8 && k_end < K; ++q)
    for (int64_t k = k_end; k < K; ++k) y[q] += x[k] * ScalarW(w + q * K + k);
}
template <typename W>
inline float Finish(const __m256* acc, const float* x, const W* w, int64_t k_end, int64_t K) {
  float sum = HorizontalSum(_mm256_add_ps(acc[0], acc[1]));
  for (int64_t k = k_end; k < K; ++k) sum += x[k] * ScalarW(w + k);
  return sum;
}

// Per-call state shared by the threads.
template <typename W>
struct Problem {
  const float* x;  // [n, K], 64-byte aligned; permuted for bf16
  int64_t n, K, M;
  const W* w;      // [M, K]
  float* y;        // [n, M]
  int64_t block_rows;  // rows per row block
};

// Register-tile shape by token group size: R rows x T tokens.
constexpr int TileRows(int T) { return T == 1 ? 4 : 3; }

// Rows [jb, j1) of a block against tokens [i, i+T) over columns [k0, k1): tiles of R rows, then 2- and
// 1-row tiles for the rest. acc: the block's accumulators, [row - jb][n][2].
template <int T, bool InRowPrefetch, typename W>
void TokenGroupPass(const Problem<W>& p, int64_t i, int64_t jb, int64_t j1, int64_t k0, int64_t k1, bool first,
                    __m256* acc, Prefetcher& pf) {
  const float* xs[T];
  for (int t = 0; t < T; ++t) xs[t] = p.x + (i + t) * p.K;
  auto tile = [&]<int R>(std::integral_constant<int, R>, int64_t j) {
    const W* ws[R];
    for (int r = 0; r < R; ++r) ws[r] = p.w + (j + r) * p.K;
    Tile<R, T, InRowPrefetch>(xs, ws, k0, k1, first, acc + ((j - jb) * p.n + i) * 2, p.n * 2, pf);
  };
  constexpr int R = TileRows(T);
  int64_t j = jb;
  for (; j + R <= j1; j += R) tile(std::integral_constant<int, R>{}, j);
  for (; j + 2 <= j1; j += 2) tile(std::integral_constant<int, 2>{}, j);
  for (; j < j1; ++j) tile(std::integral_constant<int, 1>{}, j);
}

// Tokens in groups of 2, the last one of 1 when n is odd: f(first token, T).
template <typename F>
void ForTokenGroups(int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) f(i, 2);
  if (i < n) f(i, 1);
}

// Storage for accumulators between column chunks ([rows][n][2] vectors). A struct, because a vector of
// __m256 would drop the type's attributes (-Wignored-attributes); same size and alignment.
struct AccSlot {
  __m256 v;
};
static_assert(sizeof(AccSlot) == sizeof(__m256) && alignof(AccSlot) == alignof(__m256));
inline __m256* Slots(std::vector<AccSlot>& acc) { return reinterpret_cast<__m256*>(acc.data()); }

// One row block [jb, j1) for all tokens; [next_jb, next_j1): the thread's next block (prefetched), or empty.
template <typename W>
void RowBlock(const Problem<W>& p, int64_t jb, int64_t j1, int64_t next_jb, int64_t next_j1,
              std::vector<AccSlot>& acc) {
  const int64_t K16 = p.K / 16 * 16, k_blocks = std::max<int64_t>(1, (K16 + kKBlock - 1) / kKBlock);
  acc.resize(static_cast<size_t>((j1 - jb) * p.n * 2));
  Prefetcher pf(p.w + next_jb * p.K, p.w + next_j1 * p.K);
  for (int64_t kb = 0; kb < k_blocks; ++kb) {
    const int64_t k0 = kb * kKBlock, k1 = std::min(K16, k0 + kKBlock);
    ForTokenGroups(p.n, [&](int64_t i, int T) {
      if (T == 1) TokenGroupPass<1, true>(p, i, jb, j1, k0, k1, kb == 0, Slots(acc), pf);
      else TokenGroupPass<2, false>(p, i, jb, j1, k0, k1, kb == 0, Slots(acc), pf);
    });
  }
  for (int64_t t = 0; t < p.n; ++t) {
    const float* xt = p.x + t * p.K;
    int64_t j = jb;
    for (; j + 8 <= j1; j += 8)
      Finish8(Slots(acc) + ((j - jb) * p.n + t) * 2, p.n, xt, p.w + j * p.K, K16, p.K, p.y + t * p.M + j);
    for (; j < j1; ++j) p.y[t * p.M + j] = Finish(Slots(acc) + ((j - jb) * p.n + t) * 2, xt, p.w + j * p.K, K16, p.K);
  }
}

// x[n, K] with every block of 16 reordered as LoadW0/LoadW1 widen bf16: [0..3, 8..11, 4..7, 12..15]; the
// tail past the last full block stays in place. out: [n, K].
void PermuteForBf16(const float* x, int64_t n, int64_t K, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * K;
    float* oi = out + i * K;
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 a = _mm256_loadu_ps(xi + k), b = _mm256_loadu_ps(xi + k + 8);
      _mm256_storeu_ps(oi + k, _mm256_permute2f128_ps(a, b, 0x20));
      _mm256_storeu_ps(oi + k + 8, _mm256_permute2f128_ps(a, b, 0x31));
    }
    for (; k < K; ++k) oi[k] = xi[k];
  }
}

// A 64-byte aligned float buffer that only grows: 32-byte loads of x that straddle cache lines would cost
// the kernel a third of its speed.
class AlignedFloats {
 public:
  ~AlignedFloats() { std::free(data_); }
  float* Get(int64_t count) {
    if (count > size_ || data_ == nullptr) {
      std::free(data_);
      size_ = count;
      const size_t bytes = std::max<size_t>(64, (static_cast<size_t>(count) * 4 + 63) / 64 * 64);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (data_ == nullptr) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

template <typename W>
void Run(Problem<W> p, ThreadPool* pool) {
  // Row blocks of about kBlockBytes of W, a multiple of 12 rows (whole tiles of 3 and 4 rows).
  const int64_t row_bytes = std::max<int64_t>(1, p.K * static_cast<int64_t>(sizeof(W)));
  p.block_rows = std::max<int64_t>(12, kBlockBytes / row_bytes / 12 * 12);
  const int64_t blocks = (p.M + p.block_rows - 1) / p.block_rows;
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t, int64_t) {
    thread_local std::vector<AccSlot> acc;
    int64_t b = next.fetch_add(1, std::memory_order_relaxed);
    while (b < blocks) {
      const int64_t nb = next.fetch_add(1, std::memory_order_relaxed);
      const int64_t jb = b * p.block_rows, nj = std::min(p.M, nb * p.block_rows);
      RowBlock(p, jb, std::min(p.M, jb + p.block_rows), nj, std::min(p.M, nj + p.block_rows), acc);
      b = nb;
    }
  };
  // Waking threads costs microseconds: small products run on the calling thread. Which thread computes a
  // row never changes its arithmetic, so this does not affect results.
  constexpr int64_t kMinParallelMacs = int64_t{1} << 18;
  if (pool && pool->num_threads() > 1 && blocks > 1 && p.M * p.K * p.n >= kMinParallelMacs)
    pool->ParallelFor(pool->num_threads(), 1, worker);
  else worker(0, 1);
}

}  // namespace

void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool) {
  if (w.type() == WeightType::kInt8) return MatmulInt8(x, n, w, y, pool);  // kernels/matmul_int8_cpu.cc
  const int64_t M = w.rows(), K = w.cols();
  if (n <= 0 || M <= 0) return;
  thread_local AlignedFloats xa;  // x copied (f32 W) or permuted (bf16 W); grows, no allocation per call
  float* xp = xa.Get(n * K);
  if (w.type() == WeightType::kF32) {
    std::memcpy(xp, x, sizeof(float) * static_cast<size_t>(n * K));
    return Run(Problem<float>{xp, n, K, M, w.f32(), y, 0}, pool);
  }
  PermuteForBf16(x, n, K, xp);
  Run(Problem<uint16_t>{xp, n, K, M, w.bf16(), y, 0}, pool);
}

}  // namespace layerskip::cpu
