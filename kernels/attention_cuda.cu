// Causal GQA attention over the device KV cache (the CPU op: kernels/attention_cpu.cc).
//
// One (token, query head) is always computed the same way, whichever kernel runs it:
//   keys [0, pos] are cut into chunks of kAttentionChunk (= 64) positions: chunk c is [64c, min(64c+64, pos+1)).
//   ChunkPartial (one warp): scores s_p = dot(q, k_p) * scale, lane l owning positions l and l+32, each dot
//     an fmaf chain over d = 0..hd-1; m = max s_p; w_p = exp(s_p - m); l = butterfly sum of the lanes'
//     (w_l + w_{l+32}); o[d] = fmaf chain over p in order of w_p * v_p[d] (lane l owns d = l, l+32, ...).
//   Fold: chunks are combined in increasing c: M' = max(M, m), L = L*e^(M-M') + l*e^(m-M'), O likewise.
//   out = O / L.
// AttentionDecode computes every chunk partial in its own block (split-K with a FIXED split of 64
// positions, so the split depends on the token's position only) and folds them in a second kernel
// (AttentionDecodeFused: in the last block of the token's chunks to finish, reading the partials in chunk
// order, so which block folds never changes what is folded or in what order);
// AttentionPrefill walks the chunks in one block per tile of query tokens, sharing each K/V chunk in shared
// memory, and folds as it goes. Both give bitwise the same output (tests/gpu/cuda_ops_test.cc).
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cuda_device.cuh"
#include "kernels/attention.h"

namespace layerskip::cuda {
namespace {

constexpr int kChunk = kAttentionChunk;
constexpr int kPositionsPerLane = kChunk / kWarp;
constexpr int kPrefillQueryHeads = 16;  // query heads (tile tokens x group) per prefill block

// Shared memory floats: K chunk [64, hd+1] (padded: lanes read different rows), V chunk [64, hd], and per
// warp q [hd] and weights [64].
size_t SharedBytes(int hd, int warps) {
  return sizeof(float) * (static_cast<size_t>(kChunk) * (hd + 1) + static_cast<size_t>(kChunk) * hd +
                          static_cast<size_t>(warps) * (hd + kChunk));
}

// Block-cooperative copy of positions [start, start+count) of (slot, kv head) into k_s [64, hd+1], v_s [64, hd].
__device__ void LoadChunk(const KvLayerView& kv, int slot, int kvh, int start, int count, float* k_s, float* v_s) {
  const int hd = kv.head_dim;
  const int64_t pos_stride = static_cast<int64_t>(kv.kv_heads) * hd;
  const int64_t base = slot * kv.slot_stride + start * pos_stride + static_cast<int64_t>(kvh) * hd;
  const bool bf16 = kv.dtype == DType::kBF16;
  for (int idx = threadIdx.x; idx < count * hd; idx += blockDim.x) {
    const int p = idx / hd, d = idx % hd;
    k_s[p * (hd + 1) + d] = LoadKv(kv.k, base + p * pos_stride + d, bf16);
    v_s[p * hd + d] = LoadKv(kv.v, base + p * pos_stride + d, bf16);
  }
}

// One warp: the partial (m, l, o) of query q_s [hd] over the first `count` (1..64) positions of the chunk.
// o[t] is element d = lane + 32t (0 where d >= hd). w_s [64] is this warp's scratch.
template <int DPL>
__device__ void ChunkPartial(const float* q_s, const float* k_s, const float* v_s, int count, int hd, float scale,
                             float* w_s, int lane, float& m, float& l, float (&o)[DPL]) {
  float s[kPositionsPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPositionsPerLane; ++j) {
    const int p = lane + j * kWarp;
    s[j] = -INFINITY;
    if (p < count) {
      const float* kp = k_s + p * (hd + 1);
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot = fmaf(q_s[d], kp[d], dot);
      s[j] = dot * scale;
      mx = fmaxf(mx, s[j]);
    }
  }
  mx = WarpMax(mx);
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kPositionsPerLane; ++j) {
    const int p = lane + j * kWarp;
    const float e = p < count ? expf(s[j] - mx) : 0.0f;
    w_s[p] = e;
    sum += e;
  }
  m = mx;
  l = WarpSum(sum);
  __syncwarp();
#pragma unroll
  for (int t = 0; t < DPL; ++t) {
    const int d = lane + t * kWarp;
    float acc = 0.0f;
    if (d < hd)
      for (int p = 0; p < count; ++p) acc = fmaf(w_s[p], v_s[p * hd + d], acc);
    o[t] = acc;
  }
  __syncwarp();  // w_s is rewritten by the next call
}

// Folds chunk partial (m, l, o) into the running state (M, L, O) of the earlier chunks.
template <int DPL>
__device__ __forceinline__ void Fold(float& M, float& L, float (&O)[DPL], float m, float l, const float (&o)[DPL]) {
  const float nm = fmaxf(M, m);
  const float a = expf(M - nm), b = expf(m - nm);
  L = L * a + l * b;
#pragma unroll
  for (int t = 0; t < DPL; ++t) O[t] = O[t] * a + o[t] * b;
  M = nm;
}

// One warp: folds the chunk partials part[0..last] ([hd+2] each: m, l, o) of one (token, head) in chunk
// order and writes O / L to oi [hd]. kL2: read through L2 only (partials other blocks just wrote).
template <int DPL, bool kL2>
__device__ __forceinline__ void FoldChunks(const float* part, int last, int hd, int lane, float* oi) {
  auto ld = [](const float* p) { return kL2 ? __ldcg(p) : *p; };
  float M = ld(part), L = ld(part + 1), O[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) O[t] = lane + t * kWarp < hd ? ld(part + 2 + lane + t * kWarp) : 0.0f;
  for (int c = 1; c <= last; ++c) {
    const float* pc = part + static_cast<int64_t>(c) * (hd + 2);
    float o[DPL];
#pragma unroll
    for (int t = 0; t < DPL; ++t) o[t] = lane + t * kWarp < hd ? ld(pc + 2 + lane + t * kWarp) : 0.0f;
    Fold<DPL>(M, L, O, ld(pc), ld(pc + 1), o);
  }
#pragma unroll
  for (int t = 0; t < DPL; ++t)
    if (lane + t * kWarp < hd) oi[lane + t * kWarp] = O[t] / L;
}

// grid: (chunks, kv_heads, n), block: group warps (warp w: query head kvh*group + w).
// Writes the partial of (token, head, chunk) to scratch [n, heads, chunks, hd+2] as (m, l, o[hd]).
// kFold (AttentionDecodeFused): then the last block of (token, kv head) to arrive (counters [n, kv_heads])
// folds every chunk of its group's heads in chunk order into out [n, heads, hd] and resets the counter.
template <int DPL, bool kFold>
__global__ void DecodeChunkKernel(const float* q, const int* slots, const int* positions, int heads, KvLayerView kv,
                                  int chunks, float scale, float* scratch, int* counters, float* out) {
  extern __shared__ float smem[];
  const int c = blockIdx.x, kvh = blockIdx.y, i = blockIdx.z;
  const int pos = positions[i], start = c * kChunk;
  if (start > pos) return;  // the whole block: this chunk is past the token
  const int count = min(kChunk, pos + 1 - start);
  const int hd = kv.head_dim, group = heads / kv.kv_heads;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float* k_s = smem;
  float* v_s = k_s + kChunk * (hd + 1);
  float* q_s = v_s + kChunk * hd + warp * (hd + kChunk);
  float* w_s = q_s + hd;
  const int h = kvh * group + warp;
  LoadChunk(kv, slots[i], kvh, start, count, k_s, v_s);
  for (int d = lane; d < hd; d += kWarp) q_s[d] = q[(static_cast<int64_t>(i) * heads + h) * hd + d];
  __syncthreads();
  float m, l, o[DPL];
  ChunkPartial<DPL>(q_s, k_s, v_s, count, hd, scale, w_s, lane, m, l, o);
  float* part = scratch + ((static_cast<int64_t>(i) * heads + h) * chunks + c) * (hd + 2);
  if (lane == 0) {
    part[0] = m;
    part[1] = l;
  }
#pragma unroll
  for (int t = 0; t < DPL; ++t)
    if (lane + t * kWarp < hd) part[2 + lane + t * kWarp] = o[t];
  if (!kFold) return;
  // Publish this block's partials, then count it in; the block that makes the count reach the token's
  // chunk total is the last one and every other block's partials are visible to it.
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = counters + static_cast<int64_t>(i) * kv.kv_heads + kvh;
    is_last = atomicAdd(counter, 1) == pos / kChunk;
    if (is_last) atomicExch(counter, 0);  // all of this call's blocks for it have arrived
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const float* first = scratch + (static_cast<int64_t>(i) * heads + h) * chunks * (hd + 2);
  FoldChunks<DPL, true>(first, pos / kChunk, hd, lane, out + (static_cast<int64_t>(i) * heads + h) * hd);
}

// grid: (heads, n), block: one warp. Folds chunks 0..pos/64 of (token, head) in order; out: [n, heads, hd].
template <int DPL>
__global__ void DecodeCombineKernel(const int* positions, int heads, int hd, int chunks, const float* scratch,
                                    float* out) {
  const int h = blockIdx.x, i = blockIdx.y, lane = threadIdx.x;
  const float* part = scratch + (static_cast<int64_t>(i) * heads + h) * chunks * (hd + 2);
  FoldChunks<DPL, false>(part, positions[i] / kChunk, hd, lane, out + (static_cast<int64_t>(i) * heads + h) * hd);
}

// grid: (num_tiles, kv_heads), block: tile_tokens*group warps; warp w serves token tiles[tile, w / group] and
// query head kvh*group + w % group. tiles: [num_tiles, tile_tokens] token indices of one slot, -1 pads.
template <int DPL>
__global__ void PrefillKernel(const float* q, const int* tiles, int tile_tokens, const int* slots,
                              const int* positions, int heads, KvLayerView kv, float scale, float* out) {
  extern __shared__ float smem[];
  const int kvh = blockIdx.y, hd = kv.head_dim, group = heads / kv.kv_heads;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int* tile = tiles + static_cast<int64_t>(blockIdx.x) * tile_tokens;
  const int slot = slots[tile[0]];
  int max_pos = -1;
  for (int t = 0; t < tile_tokens; ++t)
    if (tile[t] >= 0) max_pos = max(max_pos, positions[tile[t]]);
  const int i = tile[warp / group];
  const int pos = i >= 0 ? positions[i] : -1;
  const int h = kvh * group + warp % group;
  float* k_s = smem;
  float* v_s = k_s + kChunk * (hd + 1);
  float* q_s = v_s + kChunk * hd + warp * (hd + kChunk);
  float* w_s = q_s + hd;
  if (i >= 0)
    for (int d = lane; d < hd; d += kWarp) q_s[d] = q[(static_cast<int64_t>(i) * heads + h) * hd + d];
  float M = 0.0f, L = 0.0f, O[DPL];
#pragma unroll
  for (int t = 0; t < DPL; ++t) O[t] = 0.0f;
  for (int c = 0; c * kChunk <= max_pos; ++c) {
    const int start = c * kChunk;
    __syncthreads();  // every warp is done with the previous chunk
    LoadChunk(kv, slot, kvh, start, min(kChunk, max_pos + 1 - start), k_s, v_s);
    __syncthreads();
    if (i < 0 || start > pos) continue;
    float m, l, o[DPL];
    ChunkPartial<DPL>(q_s, k_s, v_s, min(kChunk, pos + 1 - start), hd, scale, w_s, lane, m, l, o);
    if (c == 0) {
      M = m;
      L = l;
#pragma unroll
      for (int t = 0; t < DPL; ++t) O[t] = o[t];
    } else {
      Fold<DPL>(M, L, O, m, l, o);
    }
  }
  if (i < 0) return;
  float* oi = out + (static_cast<int64_t>(i) * heads + h) * hd;
#pragma unroll
  for (int t = 0; t < DPL; ++t)
    if (lane + t * kWarp < hd) oi[lane + t * kWarp] = O[t] / L;
}

// grid: (n, ceil(kv_dim / 256)), block: 256. k, v: [n, kv_dim] -> cache rows (slots[i], positions[i]),
// rounded once to bf16 for a bf16 cache.
__global__ void StoreKvKernel(const float* k, const float* v, const int* slots, const int* positions, int kv_dim,
                              KvLayerView kv) {
  const int i = blockIdx.x, e = blockIdx.y * blockDim.x + threadIdx.x;
  if (e >= kv_dim) return;
  const int64_t dst = slots[i] * kv.slot_stride + static_cast<int64_t>(positions[i]) * kv_dim + e;
  const bool bf16 = kv.dtype == DType::kBF16;
  StoreKvValue(kv.k, dst, k[static_cast<int64_t>(i) * kv_dim + e], bf16);
  StoreKvValue(kv.v, dst, v[static_cast<int64_t>(i) * kv_dim + e], bf16);
}

int Chunks(int max_positions) { return (max_positions + kChunk - 1) / kChunk; }

template <typename Kernel>
cudaError_t AllowSharedMemory(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

// counters: null runs the two kernels of AttentionDecode, else the one of AttentionDecodeFused.
template <int DPL>
cudaError_t LaunchDecode(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                         int max_positions, const KvLayerView& kv, float* scratch, int* counters, float* out,
                         cudaStream_t stream) {
  const int hd = kv.head_dim, group = heads / kv.kv_heads, chunks = Chunks(max_positions);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t bytes = SharedBytes(hd, group);
  const dim3 grid(static_cast<unsigned int>(chunks), static_cast<unsigned int>(kv.kv_heads), static_cast<unsigned int>(n));
  cudaError_t err;
  if (counters) {
    if ((err = AllowSharedMemory(DecodeChunkKernel<DPL, true>, bytes)) != cudaSuccess) return err;
    DecodeChunkKernel<DPL, true><<<grid, group * kWarp, bytes, stream>>>(q, slots, positions, heads, kv, chunks,
                                                                         scale, scratch, counters, out);
    return cudaGetLastError();
  }
  if ((err = AllowSharedMemory(DecodeChunkKernel<DPL, false>, bytes)) != cudaSuccess) return err;
  DecodeChunkKernel<DPL, false><<<grid, group * kWarp, bytes, stream>>>(q, slots, positions, heads, kv, chunks, scale,
                                                                        scratch, nullptr, nullptr);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const dim3 grid2(static_cast<unsigned int>(heads), static_cast<unsigned int>(n));
  DecodeCombineKernel<DPL><<<grid2, kWarp, 0, stream>>>(positions, heads, hd, chunks, scratch, out);
  return cudaGetLastError();
}

template <int DPL>
cudaError_t LaunchPrefill(const float* q, const int* tiles, int num_tiles, int tile_tokens, const int* slots,
                          const int* positions, int heads, const KvLayerView& kv, float* out, cudaStream_t stream) {
  const int hd = kv.head_dim, group = heads / kv.kv_heads, warps = tile_tokens * group;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t bytes = SharedBytes(hd, warps);
  cudaError_t err = AllowSharedMemory(PrefillKernel<DPL>, bytes);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>(num_tiles), static_cast<unsigned int>(kv.kv_heads));
  PrefillKernel<DPL><<<grid, warps * kWarp, bytes, stream>>>(q, tiles, tile_tokens, slots, positions, heads, kv, scale,
                                                             out);
  return cudaGetLastError();
}

// Calls fn.template operator()<DPL>() for head_dim values per lane (1, 2, 4, 8), or fails.
template <typename Fn>
cudaError_t WithLanes(int hd, Fn&& fn) {
  if (hd <= 32) return fn(std::integral_constant<int, 1>());
  if (hd <= 64) return fn(std::integral_constant<int, 2>());
  if (hd <= 128) return fn(std::integral_constant<int, 4>());
  if (hd <= kMaxHeadDim) return fn(std::integral_constant<int, 8>());
  return cudaErrorInvalidValue;
}

bool ValidShape(int heads, const KvLayerView& kv) {
  return kv.kv_heads > 0 && heads % kv.kv_heads == 0 && heads / kv.kv_heads <= kWarp && kv.head_dim % 2 == 0 &&
         kv.head_dim <= kMaxHeadDim;
}

}  // namespace

cudaError_t StoreKv(const float* k, const float* v, int64_t n, const int* slots, const int* positions,
                    const KvLayerView& kv, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int kv_dim = kv.kv_heads * kv.head_dim;
  const dim3 grid(static_cast<unsigned int>(n), CeilDiv(kv_dim, 256));
  StoreKvKernel<<<grid, 256, 0, stream>>>(k, v, slots, positions, kv_dim, kv);
  return cudaGetLastError();
}

int64_t AttentionDecodeScratchFloats(int64_t n, int heads, int max_positions, int head_dim) {
  return n * heads * Chunks(max_positions) * static_cast<int64_t>(head_dim + 2);
}

cudaError_t AttentionDecode(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                            int max_positions, const KvLayerView& kv, float* scratch, float* out,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!ValidShape(heads, kv)) return cudaErrorInvalidValue;
  return WithLanes(kv.head_dim, [&](auto lanes) {
    return LaunchDecode<decltype(lanes)::value>(q, n, slots, positions, heads, max_positions, kv, scratch, nullptr,
                                                out, stream);
  });
}

int64_t AttentionDecodeCounterInts(int64_t n, int kv_heads) { return n * kv_heads; }

cudaError_t AttentionDecodeFused(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                                 int max_positions, const KvLayerView& kv, float* scratch, int* counters,
                                 float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!ValidShape(heads, kv) || !counters) return cudaErrorInvalidValue;
  return WithLanes(kv.head_dim, [&](auto lanes) {
    return LaunchDecode<decltype(lanes)::value>(q, n, slots, positions, heads, max_positions, kv, scratch, counters,
                                                out, stream);
  });
}

int AttentionTileTokens(int group) { return group >= kPrefillQueryHeads ? 1 : kPrefillQueryHeads / group; }

std::vector<int> AttentionTiles(const int* slots, int64_t n, int group) {
  const int tile = AttentionTileTokens(group);
  std::vector<std::pair<int, std::vector<int>>> by_slot;  // in order of first appearance
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_slot.begin();
    while (it != by_slot.end() && it->first != slots[i]) ++it;
    if (it == by_slot.end()) it = by_slot.insert(by_slot.end(), {slots[i], {}});
    it->second.push_back(static_cast<int>(i));
  }
  std::vector<int> tiles;
  for (const auto& [slot, tokens] : by_slot)
    for (size_t b = 0; b < tokens.size(); b += tile)
      for (int t = 0; t < tile; ++t) tiles.push_back(b + t < tokens.size() ? tokens[b + t] : -1);
  return tiles;
}

cudaError_t AttentionPrefill(const float* q, const int* tiles, int num_tiles, int tile_tokens, const int* slots,
                             const int* positions, int heads, const KvLayerView& kv, float* out,
                             cudaStream_t stream) {
  if (num_tiles == 0) return cudaSuccess;
  if (!ValidShape(heads, kv) || tile_tokens != AttentionTileTokens(heads / kv.kv_heads)) return cudaErrorInvalidValue;
  return WithLanes(kv.head_dim, [&](auto lanes) {
    return LaunchPrefill<decltype(lanes)::value>(q, tiles, num_tiles, tile_tokens, slots, positions, heads, kv, out,
                                                 stream);
  });
}

}  // namespace layerskip::cuda
