// The matmul on AMX-BF16 tiles (the `amx` path): for bf16 weights, C^T = W · X^T with TDPBF16PS; f32
// weights go through the AVX-512 kernel exactly as on `avx512-bf16`. Compiled for AVX-512 + AMX by the
// target pragma below only; everything else in the binary stays AVX2 (tests/cli/isa_isolation_test.sh).
//
// y[n, M] = x[n, K] @ W[M, K]^T. x is rounded to bf16 (nearest even, vcvtne2ps2bf16, as on avx512-bf16)
// and packed once per call into B tiles: for token tile tt (16 tokens, zero past n) and column block kb
// (32 columns, zero past K), 16 rows of 16 pairs, row r holding x[t][32 kb + 2r], x[t][32 kb + 2r + 1]
// for t = 0..15 (1 KiB, contiguous). A tiles are 16 rows x 32 columns of W read in place from the
// (memory-mapped) matrix with the row stride; a partial last block of columns or a partial last tile of
// rows is read from a zero-padded copy of the same values.
//
// Arithmetic per output (the same for every n, tile, K chunk, job grouping and thread): C[j][t] starts at
// +0 and TDPBF16PS adds the column blocks kb = 0, 1, ... in ascending order; each instruction updates
// every element from its own A row and B column only, so an element's bits do not depend on which other
// rows or tokens share its tile. Tiles are stored and reloaded exactly between K chunks, and y[t, j] is the
// final C[j][t]. So the path is batch-invariant: 1-token decode computes the same bits as any prefill.
//
// Schedule: row blocks (kBlockRows, fewer with several threads; a multiple of 32) are claimed by the
// threads from a shared counter. In a block, per K chunk (x of the chunk about 1 MiB, in L2 for all
// the block's rows; decode: the whole width), each pair of row tiles (A: 32 rows of the chunk, in L2)
// meets every pair of token tiles (B from L2): 2 x 2 C tiles, 8 tile registers in all; after the last K
// chunk the 4 C tiles are transposed into y at once, while they are in L1. Prefill (3+ token tiles)
// prefetches the next panel's W rows into L2 during the current panel's calls. Decode is a stream of W
// from memory, 32 rows at once; the hardware prefetchers follow it (software prefetch ahead in each row,
// as the AVX-512 decode tiles do, measured slower here).
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "engine/core/matrix.h"
#include "engine/util/thread_pool.h"
#include "kernels/aligned_buffer.h"
#include "kernels/matmul_isa.h"
#include "kernels/swiglu.h"

// Every header is included above this line: an inline function first defined below would be compiled
// for AVX-512 / AMX and could be the copy the linker keeps for the whole binary.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16"))), apply_to = function)
#else
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's intrinsics use self-initialised "undefined" vectors
#pragma GCC diagnostic ignored "-Wuninitialized"        // (the gather's, _mm512_i32gather_ps)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")
#endif

namespace layerskip::cpu::amx {

constexpr int64_t kBlockRows = 256;   // rows per row block (the x chunk in L2 serves them all)
// Column blocks per K chunk at least (2048 columns: each chunk drains the C tiles to memory once; 64
// measured 3-9% faster than 16 on the 1B shape's prefill), and packed x per chunk at most beyond that.
constexpr int64_t kChunkBlocks = 64;
constexpr int64_t kChunkXBytes = 1 << 20;

constexpr int64_t kPrefetchTokenTiles = 3;  // software prefetch of the next W panel from this many token tiles
constexpr int64_t kMinParallelMacs = int64_t{1} << 15;
constexpr int64_t kTileElems = 512;  // bf16 per A or B tile (16 rows x 64 bytes)

// Palette 1, all 8 tiles 16 rows x 64 bytes: C00 C01 C10 C11 = tmm0-3, A0 A1 = tmm4-5, B0 B1 = tmm6-7.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Loads this thread's tile configuration; released by the destructor (TILERELEASE), so a thread that is
// done with the tiles carries no tile state through context switches.
class TileScope {
 public:
  TileScope() {
    TileConfig c;
    for (int i = 0; i < 8; ++i) {
      c.colsb[i] = 64;
      c.rows[i] = 16;
    }
    _tile_loadconfig(&c);
  }
  ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// Lanes [0, left) of 16.
inline __mmask16 ColumnMask16(int64_t left) {
  return left >= 16 ? __mmask16{0xffff} : left <= 0 ? __mmask16{0} : static_cast<__mmask16>((1u << left) - 1);
}

// out[c] = column c of the 16 x 16 matrix of 32-bit lanes r[0..16) (bit moves only: 32-bit, 64-bit, then
// 128-bit lane interleaves).
inline void Transpose16(const __m512 (&r)[16], __m512 (&out)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // t[2i] lane L: r[2i][4L], r[2i+1][4L], r[2i][4L+1], r[2i+1][4L+1]
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // u[4g + c] lane L: rows 4g..4g+3 at column 4L + c
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c4 = 0; c4 < 4; ++c4) {  // column 4L + c4, lane g = lane L of u[4g + c4]
    const __m512 v0 = _mm512_shuffle_f32x4(u[c4], u[4 + c4], 0x44), v1 = _mm512_shuffle_f32x4(u[c4], u[4 + c4], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c4], u[12 + c4], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c4], u[12 + c4], 0xEE);
    out[c4] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    out[4 + c4] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    out[8 + c4] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    out[12 + c4] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

// x [n, K] f32 -> B tiles [TT][KB][16 pairs][16 tokens] of bf16 pairs (uint32), zero past n and K: per
// token tile, each token's row rounded to bf16 into `rows` [16][KB * 16 pairs], then each 16 x 16 block
// of pairs transposed in registers into its tile.
void PackX(const float* x, int64_t n, int64_t K, int64_t KB, uint32_t* out, uint32_t* rows) {
  for (int64_t tt = 0; tt * 16 < n; ++tt) {
    const int64_t tokens = std::min<int64_t>(16, n - tt * 16);
    for (int64_t t = 0; t < 16; ++t) {
      uint32_t* row = rows + t * KB * 16;
      if (t >= tokens) {
        std::memset(row, 0, static_cast<size_t>(KB) * 64);
        continue;
      }
      const float* xt = x + (tt * 16 + t) * K;
      for (int64_t kb = 0; kb < KB; ++kb) {
        const int64_t k = kb * 32;
        const __m512 lo = _mm512_maskz_loadu_ps(ColumnMask16(K - k), xt + k);
        const __m512 hi = _mm512_maskz_loadu_ps(ColumnMask16(K - k - 16), xt + k + 16);
        _mm512_store_si512(row + kb * 16, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
    }
    for (int64_t kb = 0; kb < KB; ++kb) {
      __m512 r[16], c[16];
      for (int t = 0; t < 16; ++t) r[t] = _mm512_load_ps(reinterpret_cast<const float*>(rows + t * KB * 16 + kb * 16));
      Transpose16(r, c);
      uint32_t* dst = out + (tt * KB + kb) * 256;
      for (int p = 0; p < 16; ++p) _mm512_store_ps(reinterpret_cast<float*>(dst + p * 16), c[p]);
    }
  }
}

// Where a row tile's A tiles come from: full column blocks at base + 32 kb (row stride `stride` bytes),
// the partial last block (if K % 32) at `tail` (row stride tail_stride bytes).
struct ATile {
  const uint16_t* base;
  int64_t stride;
  const uint16_t* tail;
  int64_t tail_stride;
};

// C tiles of row tiles a[0..NA) x token tiles b[0..NB) over column blocks [kb0, kb1) (kfull: the number of
// full blocks; block kfull, if in range, is the tail). c[a][b]: the tiles' f32 storage (16 x 16, 64-byte
// rows); first: start from zero, else reload.
// Prefetch into L2 of part of the next panel (the W rows a later Micro call reads), spread over a call's
// steps: step i touches row[r] + 32 i for each r, while i < blocks (one 64-byte line per row and step).
struct Prefetch {
  const uint16_t* row[32];
  int rows = 0;
  int64_t blocks = 0;
};

template <int NA, int NB>
void Micro(const ATile* a, const uint16_t* const* b, float* const (*c)[2], int64_t kb0, int64_t kb1, int64_t kfull,
           bool first, const Prefetch& pf) {
  // GCC's tileloadd asm does not say it reads memory: make the packed x and scratch tiles visible first.
  __asm__ volatile("" ::: "memory");
  if (first) {
    _tile_zero(0);
    if constexpr (NB == 2) _tile_zero(1);
    if constexpr (NA == 2) _tile_zero(2);
    if constexpr (NA == 2 && NB == 2) _tile_zero(3);
  } else {
    _tile_loadd(0, c[0][0], 64);
    if constexpr (NB == 2) _tile_loadd(1, c[0][1], 64);
    if constexpr (NA == 2) _tile_loadd(2, c[1][0], 64);
    if constexpr (NA == 2 && NB == 2) _tile_loadd(3, c[1][1], 64);
  }
  auto step = [&](const uint16_t* a0, int64_t s0, const uint16_t* a1, int64_t s1, int64_t kb) {
    _tile_loadd(4, a0, s0);
    if constexpr (NA == 2) _tile_loadd(5, a1, s1);
    _tile_loadd(6, b[0] + kb * kTileElems, 64);
    if constexpr (NB == 2) _tile_loadd(7, b[1] + kb * kTileElems, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (NA == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (NA == 2 && NB == 2) _tile_dpbf16ps(3, 5, 7);
  };
  const int64_t end = std::min(kb1, kfull);
  const uint16_t* a1base = NA == 2 ? a[1].base : a[0].base;
  const int64_t a1stride = NA == 2 ? a[1].stride : a[0].stride;
  for (int64_t kb = kb0; kb < end; ++kb) {
    const uint16_t* p0 = a[0].base + kb * 32;
    const uint16_t* p1 = a1base + kb * 32;
    step(p0, a[0].stride, p1, a1stride, kb);
    const int64_t i = kb - kb0;
    if (i < pf.blocks)
      for (int r = 0; r < pf.rows; ++r) _mm_prefetch(reinterpret_cast<const char*>(pf.row[r] + i * 32), _MM_HINT_T1);
  }
  if (kb1 > kfull)
    step(a[0].tail, a[0].tail_stride, NA == 2 ? a[1].tail : a[0].tail, NA == 2 ? a[1].tail_stride : a[0].tail_stride,
         kfull);
  _tile_stored(0, c[0][0], 64);
  if constexpr (NB == 2) _tile_stored(1, c[0][1], 64);
  if constexpr (NA == 2) _tile_stored(2, c[1][0], 64);
  if constexpr (NA == 2 && NB == 2) _tile_stored(3, c[1][1], 64);
}

// c: a C^T tile [16 rows][16 tokens]; y[t * ldy + r] = c[r][t] for tokens t < tokens and the rows in
// `rows` (Transpose16; for 1-2 tokens a gather of their columns).
void StoreTransposed(const float* c, __mmask16 rows, int64_t tokens, float* y, int64_t ldy) {
  if (tokens <= 2) {  // decode: gather the token's column instead
    const __m512i column = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    for (int64_t t = 0; t < tokens; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, _mm512_i32gather_ps(column, c + t, 4));
    return;
  }
  __m512 r[16], out[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(c + 16 * i);
  Transpose16(r, out);
  for (int64_t t = 0; t < tokens; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, out[t]);
}

// Per-call state shared by the threads.
struct Problem {
  const uint32_t* xb;  // packed x: [TT][KB][16][16] bf16 pairs
  int64_t n, K, KB, TT;
  const MatmulJob* jobs;
  int num_jobs;
  RowBlocks blocks;
};

// Per-thread scratch: zero-padded copies of partial tiles and the C tiles of a row block.
struct Scratch {
  std::vector<uint16_t> rows;  // a partial row tile: [16][KB * 32]
  std::vector<uint16_t> tails;  // the partial last column block of each full row tile: [R][16][32]
  std::vector<ATile> a;         // per row tile of the block
  AlignedBuffer<float> c;       // [R][TT][16][16]
};

// Rows [jb, j1) of W [M, K] for all tokens into y[n, M].
void RowBlock(const Problem& p, const uint16_t* w, float* y, int64_t M, int64_t jb, int64_t j1, Scratch& s) {
  const int64_t K = p.K, KB = p.KB, TT = p.TT, kfull = K / 32;
  const int64_t R = (j1 - jb + 15) / 16;
  s.a.resize(static_cast<size_t>(R));
  ATile* a = s.a.data();
  if (K != kfull * 32) s.tails.assign(static_cast<size_t>(R) * kTileElems, 0);
  for (int64_t rt = 0; rt < R; ++rt) {
    const int64_t j = jb + rt * 16, rows = std::min<int64_t>(16, j1 - j);
    if (rows < 16) {  // a partial row tile: all its columns from a zero-padded copy
      s.rows.assign(static_cast<size_t>(16 * KB * 32), 0);
      for (int64_t r = 0; r < rows; ++r) std::memcpy(s.rows.data() + r * KB * 32, w + (j + r) * K, K * 2);
      a[rt] = ATile{s.rows.data(), KB * 64, s.rows.data() + kfull * 32, KB * 64};
    } else if (K == kfull * 32) {
      a[rt] = ATile{w + j * K, K * 2, nullptr, 64};
    } else {
      uint16_t* tail = s.tails.data() + rt * kTileElems;
      for (int64_t r = 0; r < 16; ++r)
        std::memcpy(tail + r * 32, w + (j + r) * K + kfull * 32, (K - kfull * 32) * 2);
      a[rt] = ATile{w + j * K, K * 2, tail, 64};
    }
  }
  float* c = s.c.Get(R * TT * 256);
  auto ctile = [&](int64_t rt, int64_t tt) { return c + (rt * TT + tt) * 256; };
  // K chunks: the x of a chunk (TT x chunk B tiles) at most kChunkXBytes, so it stays in L2 for all the
  // block's rows; at least kChunkBlocks blocks.
  const int64_t chunk = std::max<int64_t>(kChunkBlocks, kChunkXBytes / (TT * 1024));
  // Prefill (3+ token tiles): while a row pair's panel meets the token tiles, the next panel's full
  // column blocks (the next row pair's in this chunk, else the first pair's in the next chunk) are
  // prefetched into L2, a share of its rows in each of the Q calls, so that W's first pass from memory
  // overlaps compute instead of stalling the first call on each panel.
  const int64_t Q = (TT + 1) / 2;
  const bool prefetch = TT >= kPrefetchTokenTiles;
  for (int64_t kb0 = 0; kb0 < KB; kb0 += chunk) {
    const int64_t kb1 = std::min(KB, kb0 + chunk);
    for (int64_t rt = 0; rt < R; rt += 2) {
      const int na = R - rt >= 2 ? 2 : 1;
      const uint16_t* next[32];
      int next_rows = 0;
      int64_t next_kb0 = 0, next_kb1 = 0;
      if (prefetch) {
        const int64_t nrt = rt + 2 < R ? rt + 2 : 0;
        next_kb0 = rt + 2 < R ? kb0 : kb1;
        next_kb1 = std::min(std::min(KB, next_kb0 + chunk), kfull);
        if (next_kb0 < next_kb1)
          for (int64_t t = nrt; t < std::min(R, nrt + 2); ++t)
            for (int r = 0; r < 16; ++r) next[next_rows++] = a[t].base + r * (a[t].stride / 2) + next_kb0 * 32;
      }
      for (int64_t tt = 0; tt < TT; tt += 2) {
        Prefetch pf;
        if (next_rows > 0) {
          const int64_t q = tt / 2, r0 = q * next_rows / Q, r1 = (q + 1) * next_rows / Q;
          for (int64_t r = r0; r < r1; ++r) pf.row[pf.rows++] = next[r];
          pf.blocks = next_kb1 - next_kb0;
        }
        const int nb = TT - tt >= 2 ? 2 : 1;
        const uint16_t* b[2] = {reinterpret_cast<const uint16_t*>(p.xb + tt * KB * 256),
                                reinterpret_cast<const uint16_t*>(p.xb + (tt + nb - 1) * KB * 256)};
        float* const ct[2][2] = {{ctile(rt, tt), ctile(rt, tt + nb - 1)},
                                 {ctile(rt + na - 1, tt), ctile(rt + na - 1, tt + nb - 1)}};
        const bool first = kb0 == 0;
        if (na == 2 && nb == 2) Micro<2, 2>(a + rt, b, ct, kb0, kb1, kfull, first, pf);
        else if (na == 2) Micro<2, 1>(a + rt, b, ct, kb0, kb1, kfull, first, pf);
        else if (nb == 2) Micro<1, 2>(a + rt, b, ct, kb0, kb1, kfull, first, pf);
        else Micro<1, 1>(a + rt, b, ct, kb0, kb1, kfull, first, pf);
        if (kb1 < KB) continue;
        // Last chunk: the C^T tiles just stored (in L1) -> y[t, j] now, so that the stores' misses on y
        // drain while the next tiles compute (a separate pass after the block measured ~10% of prefill).
        for (int i = 0; i < na; ++i) {
          const int64_t j = jb + (rt + i) * 16;
          const __mmask16 rows = ColumnMask16(j1 - j);
          for (int u = 0; u < nb; ++u)
            StoreTransposed(ctile(rt + i, tt + u), rows, std::min<int64_t>(16, p.n - (tt + u) * 16),
                            y + (tt + u) * 16 * M + j, M);
        }
      }
    }
  }
}

// Task b of the flattened list: its job and row block; both products and the SwiGLU for a fused job.
void RunBlock(const Problem& p, int64_t b, Scratch& s) {
  int64_t jb, j1;
  const MatmulJob& jd = p.jobs[p.blocks.Locate(p.jobs, b, &jb, &j1)];
  const int64_t M = jd.w->rows();
  RowBlock(p, static_cast<const uint16_t*>(jd.w->data()), jd.y, M, jb, j1, s);
  if (jd.w_up) {
    RowBlock(p, static_cast<const uint16_t*>(jd.w_up->data()), jd.up, M, jb, j1, s);
    for (int64_t t = 0; t < p.n; ++t) SwiGluRows(jd.y + t * M + jb, jd.up + t * M + jb, j1 - jb);
  }
}

void RunGroup(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  Problem p;
  p.n = n;
  p.K = jobs[0].w->cols();
  p.KB = (p.K + 31) / 32;
  p.TT = (n + 15) / 16;
  p.jobs = jobs;
  p.num_jobs = num_jobs;
  thread_local AlignedBuffer<uint32_t> xa, xrows;  // grow; no allocation per call
  uint32_t* xb = xa.Get(p.TT * p.KB * 256);
  PackX(x, n, p.K, p.KB, xb, xrows.Get(16 * p.KB * 16));
  p.xb = xb;
  const int64_t total_rows = GroupRows(jobs, num_jobs), macs = total_rows * p.K * n;
  // Row blocks: kBlockRows, or fewer (a multiple of 32: pairs of row tiles) so that every thread gets
  // about 4 blocks of the group.
  const int threads = pool ? pool->num_threads() : 1;
  const int64_t by_threads = std::max<int64_t>(32, (total_rows / (4 * threads) + 31) / 32 * 32);
  p.blocks.Build(jobs, num_jobs, threads > 1 ? std::min(kBlockRows, by_threads) : kBlockRows);
  const int64_t blocks = p.blocks.size();
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t, int64_t) {
    thread_local Scratch scratch;
    TileScope tiles;  // this thread's tile configuration, for this piece of the loop
    for (int64_t b = next.fetch_add(1, std::memory_order_relaxed); b < blocks;
         b = next.fetch_add(1, std::memory_order_relaxed))
      RunBlock(p, b, scratch);
  };
  // Which thread computes a block never changes its arithmetic, so this choice does not affect results.
  if (threads > 1 && blocks > 1 && macs >= kMinParallelMacs) pool->ParallelFor(threads, 1, worker);
  else worker(0, 1);
}

}  // namespace layerskip::cpu::amx

namespace layerskip::cpu {

void MatmulGroupAmx(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  if (jobs[0].w->type() == WeightType::kF32) return MatmulGroupAvx512Bf16(x, n, jobs, num_jobs, pool);
  amx::RunGroup(x, n, jobs, num_jobs, pool);
}

}  // namespace layerskip::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
