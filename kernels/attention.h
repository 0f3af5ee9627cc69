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
