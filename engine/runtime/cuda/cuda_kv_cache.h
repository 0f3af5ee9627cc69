#pragma once
// The KV cache in device memory, with the CPU KvCache's layout and bookkeeping: static, position-indexed,
// [layers, slots, capacity, kv_heads, head_dim] f32 (or bf16) for K and for V, and a length per (layer, slot) kept on
// the host (the kernels take positions with the tokens, so lengths never travel to the device).
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "kernels/attention.h"
#include "kernels/cuda_common.h"
#include "kernels/device_weight.h"

namespace layerskip::cuda {

class CudaKvCache {
 public:
  // Allocates (and zeroes) K and V for layers [first_layer, end_layer), num_slots x capacity positions on the
  // current device.
  static absl::StatusOr<std::unique_ptr<CudaKvCache>> Create(const LlamaConfig& config, int first_layer,
                                                             int end_layer, int num_slots, int capacity);
  // The same with the element type of K and V: DType::kBF16 halves the cache and the attention's reads; each
  // value is rounded to bf16 once, when stored, so a token's results stay batch-invariant (they differ from
  // an f32 cache's by that rounding).
  static absl::StatusOr<std::unique_ptr<CudaKvCache>> Create(const LlamaConfig& config, int first_layer,
                                                             int end_layer, int num_slots, int capacity,
                                                             DType dtype);

  int first_layer() const { return first_layer_; }
  int end_layer() const { return end_layer_; }
  int num_slots() const { return num_slots_; }
  int capacity() const { return capacity_; }
  int kv_dim() const { return kv_heads_ * head_dim_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return k_.bytes() + v_.bytes(); }

  // Device view of one layer for the attention kernels.
  KvLayerView LayerView(int layer) const;

  int length(int layer, int slot) const { return lengths_[Index(layer, slot)]; }
  void set_length(int layer, int slot, int len) { lengths_[Index(layer, slot)] = len; }
  // Every layer of `slot` keeps at most `len` positions (a rollback is a length change).
  void Truncate(int slot, int len) { TruncateLayers(slot, first_layer_, end_layer_, len); }
  void TruncateLayers(int slot, int a, int b, int len);
  void Reset(int slot) { Truncate(slot, 0); }

 private:
  CudaKvCache() = default;
  size_t Index(int layer, int slot) const { return static_cast<size_t>(layer - first_layer_) * num_slots_ + slot; }

  int first_layer_ = 0, end_layer_ = 0, num_slots_ = 0, capacity_ = 0, kv_heads_ = 0, head_dim_ = 0;
  DType dtype_ = DType::kF32;
  DeviceBuffer<uint8_t> k_, v_;  // [layers, slots, capacity, kv_heads, head_dim] of dtype_
  std::vector<int> lengths_;   // [layers, slots]
};

}  // namespace layerskip::cuda
