#pragma once
// Static, position-indexed KV cache for layers [first_layer, end_layer) and a fixed number of sequence slots.
// Each (layer, slot) has its own length, so layers [0,E) may run ahead of [E,L) during self-speculation.
// Rolling back is a length change: stale entries past the length are never read and get overwritten.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/config.h"
#include "kernels/attention.h"

namespace layerskip {

class KvCache {
 public:
  // capacity: positions per slot. Memory is reserved, and committed by the OS as it is written.
  KvCache(const LlamaConfig& config, int first_layer, int end_layer, int num_slots, int capacity);

  int first_layer() const { return first_layer_; }
  int end_layer() const { return end_layer_; }
  int num_slots() const { return num_slots_; }
  int capacity() const { return capacity_; }
  int kv_dim() const { return kv_heads_ * head_dim_; }

  // K or V row of (layer, slot, pos): [kv_heads, head_dim].
  float* k(int layer, int slot, int pos) { return Row(k_, layer, slot, pos); }
  float* v(int layer, int slot, int pos) { return Row(v_, layer, slot, pos); }
  const float* k(int layer, int slot, int pos) const { return const_cast<KvCache*>(this)->k(layer, slot, pos); }
  const float* v(int layer, int slot, int pos) const { return const_cast<KvCache*>(this)->v(layer, slot, pos); }
  cpu::KvLayerView LayerView(int layer) const;

  int length(int layer, int slot) const { return lengths_[Index(layer, slot)]; }
  void set_length(int layer, int slot, int len) { lengths_[Index(layer, slot)] = len; }

  // Every layer of `slot` keeps at most `len` positions (a rollback); lengths below it are kept.
  void Truncate(int slot, int len);
  // The same for layers [a, b) only.
  void TruncateLayers(int slot, int a, int b, int len);
  // Frees a slot for a new sequence (length 0 everywhere).
  void Reset(int slot) { Truncate(slot, 0); }

  // Bytes of K and V held per position over all layers of this cache.
  int64_t bytes_per_position() const;

 private:
  size_t Index(int layer, int slot) const {
    return static_cast<size_t>(layer - first_layer_) * num_slots_ + slot;
  }
  float* Row(std::unique_ptr<float[]>& buf, int layer, int slot, int pos) {
    return buf.get() + (Index(layer, slot) * capacity_ + pos) * static_cast<size_t>(kv_dim());
  }

  int first_layer_, end_layer_, num_slots_, capacity_, kv_heads_, head_dim_;
  std::unique_ptr<float[]> k_, v_;  // [layers, slots, capacity, kv_heads, head_dim]
  std::vector<int> lengths_;        // [layers, slots]
};

}  // namespace layerskip
