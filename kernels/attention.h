#pragma once
// Causal grouped-query attention of a batch of new tokens over a KV cache.
#include <cstdint>

#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// One layer's KV cache: for slot s and position p, K at k + s*slot_stride + p*kv_heads*head_dim,
// laid out [kv_heads, head_dim]; V likewise.
struct KvLayerView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t slot_stride = 0;  // floats per slot
  int kv_heads = 0;
  int head_dim = 0;
};

// q: [n, heads, head_dim]; token i attends to positions [0, positions[i]] of slot slots[i] (its own K/V
// already written there). out: [n, heads, head_dim]. Query head h reads KV head h / (heads / kv_heads).
// Scores are scaled by 1/sqrt(head_dim). Each (token, head) is computed independently in a fixed order.
// Tokens of one slot that are next to each other in the batch share tiles: each block of K and V is loaded
// once for all of a tile's queries (kernels/attention_cpu.cc). Every output is bit for bit what
// AttentionPerQuery computes for it, whatever the batch or thread count.
void Attention(const float* q, int64_t n, const int* slots, const int* positions, int heads,
               const KvLayerView& kv, float* out, ThreadPool* pool);

// The same, one query (token, head) at a time over all its keys: the reference the tiled loop must equal
// bit for bit (tests, benchmarks).
void AttentionPerQuery(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                       const KvLayerView& kv, float* out, ThreadPool* pool);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (attention_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

#include <vector>

#include "kernels/device_weight.h"

namespace layerskip::cuda {

// One layer of the device KV cache: K of (slot, pos) at k + slot*slot_stride + pos*kv_heads*head_dim
// elements, laid out [kv_heads, head_dim]; V likewise (the CPU KvLayerView layout). dtype kF32: k, v are
// float*; kBF16: uint16_t* bf16 bits (rounded to nearest even once, on store; read back exactly).
struct KvLayerView {
  void* k = nullptr;
  void* v = nullptr;
  int64_t slot_stride = 0;
  int kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;
};

// Keys are processed in chunks of this many positions; a token's result depends only on its position.
constexpr int kAttentionChunk = 64;
// The largest head_dim the attention kernels take.
constexpr int kMaxHeadDim = 256;

// Writes k, v: [n, kv_heads*head_dim] to the cache at (slots[i], positions[i]).
cudaError_t StoreKv(const float* k, const float* v, int64_t n, const int* slots, const int* positions,
                    const KvLayerView& kv, cudaStream_t stream);

// Floats of scratch AttentionDecode needs: [n, heads, chunks(max_positions), head_dim + 2].
int64_t AttentionDecodeScratchFloats(int64_t n, int heads, int max_positions, int head_dim);

// Split-K decode attention. q: [n, heads, head_dim]; token i attends to positions [0, positions[i]] of slot
// slots[i]; out: [n, heads, head_dim]. One block per (token, kv head, chunk of kAttentionChunk positions)
// writes a partial (max, sum, unnormalised output) to `scratch`; a second kernel folds the chunks of each
// (token, head) in chunk order. max_positions bounds every position (sizes the grid, not the arithmetic).
cudaError_t AttentionDecode(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                            int max_positions, const KvLayerView& kv, float* scratch, float* out,
                            cudaStream_t stream);

// Tokens per prefill tile for a GQA group size (heads / kv_heads): tile tokens x group = 16 query heads
// share each K/V chunk loaded into shared memory.
int AttentionTileTokens(int group);

// Query tiles for AttentionPrefill from the host-side slots and positions of a batch: [num_tiles, tile]
// token indices (-1 pads), each tile holding consecutive tokens of one slot.
std::vector<int> AttentionTiles(const int* slots, int64_t n, int group);

// Tiled prefill attention, same inputs and bitwise the same results as AttentionDecode: one block per
// (tile, kv head) walks the chunks in order, loading each chunk's K/V once for the whole tile, and folds
// the chunk partials with the same arithmetic as AttentionDecode.
cudaError_t AttentionPrefill(const float* q, const int* tiles, int num_tiles, int tile_tokens, const int* slots,
                             const int* positions, int heads, const KvLayerView& kv, float* out,
                             cudaStream_t stream);

// Issue 17, not yet run on a GPU (docs/cuda.md): AttentionDecode in one kernel. Each (token, kv head, chunk)
// block writes its partial to `scratch` as AttentionDecode does; the block that arrives last for its (token,
// kv head) (an atomic count in counters[n, kv_heads]) folds chunks 0..pos/64 in chunk order with the fold
// kernel's arithmetic and resets its counter. Bitwise AttentionDecode. counters: zero before the first call,
// left zero by every call (so a CUDA graph may replay it); one call at a time per counters buffer.
int64_t AttentionDecodeCounterInts(int64_t n, int kv_heads);
cudaError_t AttentionDecodeFused(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                                 int max_positions, const KvLayerView& kv, float* scratch, int* counters,
                                 float* out, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
