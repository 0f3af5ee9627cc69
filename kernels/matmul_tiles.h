#pragma once
// The CPU matmul's schedule and register tiles, written once over an instruction-set traits type I and
// compiled by each matmul_<isa>_cpu.cc under its own target (that file includes this header inside a
// `#pragma GCC target` region and in its own namespace, so no function here is shared between targets).
//
// y[n, M] = x[n, K] @ W[M, K]^T. Arithmetic order (the same for every output y[t, j], whatever n, job
// group, thread, tile or K chunk computes it):
//   acc0 = acc1 = 0                                     (two I::V accumulators)
//   for each block of I::kBlock columns, ascending:     acc_h = I::Fma(x_h, w_h, acc_h), h = 0, 1
//     (w_h = I::LoadW<h>(block), x_h the prepared x at the same block, I::PrepareX laid out to match;
//      with I::kMaskedTail the last partial block is loaded masked against a zero-padded x)
//   sum = I::Sum(acc0 + acc1)                           (a fixed tree)
//   without kMaskedTail, the tail k = kBlock*(K/kBlock) .. K-1 ascending: sum = sum + x[k] * W[j, k]
//   y[t, j] = sum
// Accumulators of a K chunk are stored and reloaded exactly, so K chunking, the register tile (R rows x
// T tokens) and the thread split never change a result's bits: y is batch-invariant on a given path.
//
// Schedule: rows are cut into row blocks (about kBlockBytes of W, fewer rows for small matrices so both
// threads get several) that threads claim from a shared counter, so a core slowed by other work simply
// does fewer. In a block, for each K chunk, tokens pass over the block's rows in groups of up to
// I::kTokens, in register tiles of TileRows(T) rows x T tokens (x of the group stays in L1, the block's W
// in L2); decoding (n = 1) uses tiles of 4 rows x 1 token that prefetch their rows ahead. Every tile also
// prefetches one line of the thread's next row block into L2 per 64 columns.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "kernels/matmul_isa.h"
#include "kernels/swiglu.h"

#ifndef LAYERSKIP_MATMUL_ISA
#error "define LAYERSKIP_MATMUL_ISA (the namespace of this instruction set's copy) before including"
#endif

namespace layerskip::cpu::LAYERSKIP_MATMUL_ISA {

constexpr int64_t kBlockBytes = 192 << 10;  // W bytes per row block (kept in L2 while all tokens pass)
constexpr int64_t kKChunk = 2048;           // columns per K chunk (a multiple of every kBlock)
constexpr int kPrefetchBytes = 1024;        // distance of the in-row prefetch (1-token passes)
// Waking threads costs microseconds: products below this many multiply-adds run on the calling thread.
constexpr int64_t kMinParallelMacs = int64_t{1} << 15;

// Streams a byte range into L2, one cache line per Tick (the thread's next row block); past the end it
// re-touches the last line, which costs nothing and needs no branch.
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

// acc[r][t] = Fma(x_t, w_r, acc[r][t]) for the R x T tile at column k, half H. Whichever of the weights
// (R) and the x vectors (T) are fewer stay in registers while the others stream through one register.
template <typename I, int H, int R, int T, typename W>
inline void HalfBlock(typename I::V (&acc)[R][T], const typename I::X* const* xs, const W* const* ws, int64_t k,
                      typename I::Mask mask) {
  using V = typename I::V;
  if constexpr (R <= T) {
    V w[R];
    for (int r = 0; r < R; ++r) w[r] = I::template LoadW<H>(ws[r] + k, mask);
    for (int t = 0; t < T; ++t) {
      const V x = I::template LoadX<H>(xs[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = I::Fma(x, w[r], acc[r][t]);
    }
  } else {
    V x[T];
    for (int t = 0; t < T; ++t) x[t] = I::template LoadX<H>(xs[t] + k);
    for (int r = 0; r < R; ++r) {
      const V w = I::template LoadW<H>(ws[r] + k, mask);
      for (int t = 0; t < T; ++t) acc[r][t] = I::Fma(x[t], w, acc[r][t]);
    }
  }
}

// One K chunk of a row block: columns [k0, k1); first: accumulators start at zero (else reloaded); last:
// the tiles finish their outputs into y[n, M] (else store the accumulators for the next chunk).
struct Chunk {
  int64_t k0, k1;
  bool first, last;
  float* y;
  int64_t M;
};

// One register tile: rows ws[0..R) (= j..j+R) of W times tokens xs[0..T) (= i..i+T) over the chunk's
// columns (whole blocks; a block past K is the masked tail). acc[r * stride + t * 2 + h]: accumulator h of
// (row r, token t) between chunks. In the last chunk the tile finishes its outputs itself: I::Sum8 / I::Sum
// of acc0 + acc1, then (without kMaskedTail) the scalar tail, into y[i + t, j + r].
template <typename I, int R, int T, bool InRowPrefetch, typename W>
inline void Tile(const typename I::X* const* xs, const W* const* ws, int64_t K, const Chunk& c, int64_t i, int64_t j,
                 typename I::V* acc, int64_t stride, Prefetcher& pf) {
  using V = typename I::V;
  V a0[R][T], a1[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      a0[r][t] = c.first ? I::Zero() : acc[r * stride + t * 2];
      a1[r][t] = c.first ? I::Zero() : acc[r * stride + t * 2 + 1];
    }
  auto block = [&](int64_t k, typename I::Mask mask) {
    if constexpr (InRowPrefetch)
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(ws[r] + k) + kPrefetchBytes, _MM_HINT_T0);
    HalfBlock<I, 0, R, T>(a0, xs, ws, k, mask);
    HalfBlock<I, 1, R, T>(a1, xs, ws, k, mask);
  };
  constexpr int64_t B = I::kBlock;
  const int64_t full_end = std::min(c.k1, K / B * B);
  int64_t k = c.k0;
  for (; k + 64 <= full_end; k += 64) {  // one next-block line per 64 columns
    pf.Tick();
    for (int u = 0; u < 64 / B; ++u) block(k + B * u, I::kFullMask);
  }
  for (; k < full_end; k += B) block(k, I::kFullMask);
  if (k < c.k1) block(k, I::TailMask(K - k));  // the masked tail (only when I::kMaskedTail)
  if (!c.last) {
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        acc[r * stride + t * 2] = a0[r][t];
        acc[r * stride + t * 2 + 1] = a1[r][t];
      }
    return;
  }
  constexpr int N = R * T;
  V v[N];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) v[r * T + t] = I::Add(a0[r][t], a1[r][t]);
  float sums[N + 8];
  int q = 0;
  for (; q + 8 <= N; q += 8) I::Sum8(v + q, sums + q);
  for (; q < N; ++q) sums[q] = I::Sum(v[q]);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float sum = sums[r * T + t];
      if constexpr (!I::kMaskedTail)  // the tail of x sits unpermuted in the prepared x
        for (int64_t kt = K / B * B; kt < K; ++kt) sum += xs[t][kt] * I::ScalarW(ws[r] + kt);
      c.y[(i + t) * c.M + j + r] = sum;
    }
}

// Storage for accumulators between K chunks ([rows][n][2] vectors): plain bytes of a vector's size and
// alignment, so the std::vector that holds them is ordinary baseline code (no wide registers in its ABI).
template <size_t Bytes>
struct alignas(Bytes) AccSlot {
  unsigned char bytes[Bytes];
};

// Per-call state shared by the threads: one x, a row block size, and the flattened (job, block) list.
template <typename I, typename W>
struct Problem {
  const typename I::X* x;  // [n, kx], prepared by I::PrepareX
  int64_t n, K, kx;        // kx: x's row stride (K, or K padded to a block for the masked tail)
  const MatmulJob* jobs;
  int num_jobs;
  RowBlocks blocks;
};

// Rows [jb, j1) of one matrix against tokens [i, i + T) over one K chunk.
template <typename I, int T, bool InRowPrefetch, typename W>
void TokenGroupPass(const Problem<I, W>& p, const W* w, int64_t i, int64_t jb, int64_t j1, const Chunk& c,
                    typename I::V* acc, Prefetcher& pf) {
  const typename I::X* xs[T];
  for (int t = 0; t < T; ++t) xs[t] = p.x + (i + t) * p.kx;
  auto tile = [&]<int R>(std::integral_constant<int, R>, int64_t j) {
    const W* ws[R];
    for (int r = 0; r < R; ++r) ws[r] = w + (j + r) * p.K;
    Tile<I, R, T, InRowPrefetch>(xs, ws, p.K, c, i, j, acc ? acc + ((j - jb) * p.n + i) * 2 : nullptr, p.n * 2, pf);
  };
  constexpr int R = I::TileRows(T);
  int64_t j = jb;
  for (; j + R <= j1; j += R) tile(std::integral_constant<int, R>{}, j);
  for (; j + 2 <= j1; j += 2) tile(std::integral_constant<int, 2>{}, j);
  for (; j < j1; ++j) tile(std::integral_constant<int, 1>{}, j);
}

// Tokens [i, i + T) with T = min(kTokens, n - i), dispatched to the tile shape for T.
template <typename I, int T, typename W>
void TokenGroupDispatch(const Problem<I, W>& p, const W* w, int64_t i, int64_t left, int64_t jb, int64_t j1,
                        const Chunk& c, typename I::V* acc, Prefetcher& pf) {
  if constexpr (T > 1) {
    if (left < T) return TokenGroupDispatch<I, T - 1>(p, w, i, left, jb, j1, c, acc, pf);
    TokenGroupPass<I, T, false>(p, w, i, jb, j1, c, acc, pf);
  } else {
    TokenGroupPass<I, 1, true>(p, w, i, jb, j1, c, acc, pf);
  }
}

// Rows [jb, j1) of matrix w for all tokens into y[n, M] (row stride M). Accumulators go through `slots`
// only between K chunks (K > kKChunk).
template <typename I, typename W>
void RowBlock(const Problem<I, W>& p, const W* w, float* y, int64_t M, int64_t jb, int64_t j1, Prefetcher& pf,
              std::vector<AccSlot<sizeof(typename I::V)>>& slots) {
  using V = typename I::V;
  constexpr int64_t B = I::kBlock;
  const int64_t kcover = I::kMaskedTail ? (p.K + B - 1) / B * B : p.K / B * B;
  const int64_t chunks = std::max<int64_t>(1, (kcover + kKChunk - 1) / kKChunk);
  if (chunks > 1) slots.resize(static_cast<size_t>((j1 - jb) * p.n * 2));
  V* acc = chunks > 1 ? reinterpret_cast<V*>(slots.data()) : nullptr;
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const Chunk c{ci * kKChunk, std::min(kcover, (ci + 1) * kKChunk), ci == 0, ci == chunks - 1, y, M};
    for (int64_t i = 0; i < p.n; i += I::kTokens)
      TokenGroupDispatch<I, I::kTokens>(p, w, i, p.n - i, jb, j1, c, acc, pf);
  }
}

// Task b of the flattened list: its job and row block; the job's rows for (W, y), or both products and
// the SwiGLU for a fused job.
template <typename I, typename W>
void RunBlock(const Problem<I, W>& p, int64_t b, int64_t next_b, std::vector<AccSlot<sizeof(typename I::V)>>& slots) {
  int64_t jb, j1;
  const int job = p.blocks.Locate(p.jobs, b, &jb, &j1);
  const W* w = static_cast<const W*>(p.jobs[job].w->data());
  const void* pf_begin = w + jb * p.K;  // no next block: re-touch this one (cached already)
  const void* pf_end = w + j1 * p.K;
  if (next_b < p.blocks.size()) {
    int64_t njb, nj1;
    const int nj = p.blocks.Locate(p.jobs, next_b, &njb, &nj1);
    const W* nw = static_cast<const W*>(p.jobs[nj].w->data());
    pf_begin = nw + njb * p.K;
    pf_end = nw + nj1 * p.K;
  }
  Prefetcher pf(pf_begin, pf_end);
  const MatmulJob& jd = p.jobs[job];
  const int64_t M = jd.w->rows();
  RowBlock(p, w, jd.y, M, jb, j1, pf, slots);
  if (jd.w_up) {
    RowBlock(p, static_cast<const W*>(jd.w_up->data()), jd.up, M, jb, j1, pf, slots);
    for (int64_t t = 0; t < p.n; ++t) SwiGluRows(jd.y + t * M + jb, jd.up + t * M + jb, j1 - jb);
  }
}

template <typename I, typename W>
void RunGroup(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  using V = typename I::V;
  Problem<I, W> p;
  p.n = n;
  p.K = jobs[0].w->cols();
  p.kx = I::kMaskedTail ? (p.K + I::kBlock - 1) / I::kBlock * I::kBlock : p.K;
  p.jobs = jobs;
  p.num_jobs = num_jobs;
  thread_local AlignedBuffer<typename I::X> xa;  // grows; no allocation per call
  typename I::X* xp = xa.Get(n * p.kx);
  I::template PrepareX<W>(x, n, p.K, p.kx, xp);
  p.x = xp;
  // Row blocks: about kBlockBytes of W, a multiple of 12 rows (whole tiles of 3 and 4 rows), and small
  // enough that every thread gets about 4 blocks of the group.
  const int64_t total_rows = GroupRows(jobs, num_jobs), macs = total_rows * p.K * n;
  const int threads = pool ? pool->num_threads() : 1;
  const int64_t row_bytes = std::max<int64_t>(1, p.K * static_cast<int64_t>(sizeof(W)));
  const int64_t by_bytes = std::max<int64_t>(12, kBlockBytes / row_bytes / 12 * 12);
  const int64_t by_threads = std::max<int64_t>(12, (total_rows / (4 * threads) + 11) / 12 * 12);
  p.blocks.Build(jobs, num_jobs, threads > 1 ? std::min(by_bytes, by_threads) : by_bytes);
  const int64_t blocks = p.blocks.size();
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t, int64_t) {
    thread_local std::vector<AccSlot<sizeof(V)>> slots;
    int64_t b = next.fetch_add(1, std::memory_order_relaxed);
    while (b < blocks) {
      const int64_t nb = next.fetch_add(1, std::memory_order_relaxed);
      RunBlock(p, b, nb, slots);
      b = nb;
    }
  };
  // Which thread computes a block never changes its arithmetic, so this choice does not affect results.
  if (threads > 1 && blocks > 1 && macs >= kMinParallelMacs) pool->ParallelFor(threads, 1, worker);
  else worker(0, 1);
}

}  // namespace layerskip::cpu::LAYERSKIP_MATMUL_ISA
