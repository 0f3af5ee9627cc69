#include "engine/runtime/kv_cache.h"

#include <algorithm>

namespace layerskip {

KvCache::KvCache(const LlamaConfig& config, int first_layer, int end_layer, int num_slots, int capacity)
    : first_layer_(first_layer),
      end_layer_(end_layer),
      num_slots_(num_slots),
      capacity_(capacity),
      kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim),
      lengths_(static_cast<size_t>(end_layer - first_layer) * num_slots, 0) {
  const size_t n = static_cast<size_t>(end_layer - first_layer) * num_slots * capacity * kv_dim();
  // new float[] without () leaves the memory untouched, so pages are committed lazily.
  k_.reset(new float[std::max<size_t>(n, 1)]);
  v_.reset(new float[std::max<size_t>(n, 1)]);
}

cpu::KvLayerView KvCache::LayerView(int layer) const {
  cpu::KvLayerView view;
  view.k = k(layer, 0, 0);
  view.v = v(layer, 0, 0);
  view.slot_stride = static_cast<int64_t>(capacity_) * kv_dim();
  view.kv_heads = kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

void KvCache::Truncate(int slot, int len) { TruncateLayers(slot, first_layer_, end_layer_, len); }

void KvCache::TruncateLayers(int slot, int a, int b, int len) {
  for (int l = std::max(a, first_layer_); l < std::min(b, end_layer_); ++l) {
    int& cur = lengths_[Index(l, slot)];
    cur = std::min(cur, len);
  }
}

int64_t KvCache::bytes_per_position() const {
  return static_cast<int64_t>(end_layer_ - first_layer_) * 2 * kv_dim() * sizeof(float);
}

}  // namespace layerskip
