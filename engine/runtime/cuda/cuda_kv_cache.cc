#include "engine/runtime/cuda/cuda_kv_cache.h"

#include <algorithm>

namespace layerskip::cuda {

absl::StatusOr<std::unique_ptr<CudaKvCache>> CudaKvCache::Create(const LlamaConfig& config, int first_layer,
                                                                 int end_layer, int num_slots, int capacity) {
  return Create(config, first_layer, end_layer, num_slots, capacity, DType::kF32);
}

absl::StatusOr<std::unique_ptr<CudaKvCache>> CudaKvCache::Create(const LlamaConfig& config, int first_layer,
                                                                 int end_layer, int num_slots, int capacity,
                                                                 DType dtype) {
  if (first_layer < 0 || end_layer > config.num_hidden_layers || first_layer > end_layer || num_slots <= 0 ||
      capacity <= 0)
    return absl::InvalidArgumentError(absl::StrCat("bad KV cache shape: layers [", first_layer, ",", end_layer,
                                                   "), ", num_slots, " slots, capacity ", capacity));
  std::unique_ptr<CudaKvCache> c(new CudaKvCache());
  c->first_layer_ = first_layer;
  c->end_layer_ = end_layer;
  c->num_slots_ = num_slots;
  c->capacity_ = capacity;
  c->kv_heads_ = config.num_key_value_heads;
  c->head_dim_ = config.head_dim;
  c->dtype_ = dtype;
  const size_t elements = static_cast<size_t>(end_layer - first_layer) * num_slots * capacity * c->kv_dim();
  const size_t bytes = elements * (dtype == DType::kBF16 ? 2 : 4);
  LS_ASSIGN_OR_RETURN(c->k_, DeviceBuffer<uint8_t>::Alloc(bytes));
  LS_ASSIGN_OR_RETURN(c->v_, DeviceBuffer<uint8_t>::Alloc(bytes));
  // Zeroed so that a stale read (a bug) gives finite numbers, never NaN from uninitialised memory.
  LS_CUDA_RETURN_IF_ERROR(cudaMemset(c->k_.get(), 0, c->k_.bytes()));
  LS_CUDA_RETURN_IF_ERROR(cudaMemset(c->v_.get(), 0, c->v_.bytes()));
  LS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // legacy-stream memsets: done before any engine stream reads
  c->lengths_.assign(static_cast<size_t>(end_layer - first_layer) * num_slots, 0);
  return c;
}

KvLayerView CudaKvCache::LayerView(int layer) const {
  KvLayerView view;
  const size_t offset =
      Index(layer, 0) * capacity_ * static_cast<size_t>(kv_dim()) * (dtype_ == DType::kBF16 ? 2 : 4);
  view.k = k_.get() + offset;
  view.v = v_.get() + offset;
  view.dtype = dtype_;
  view.slot_stride = static_cast<int64_t>(capacity_) * kv_dim();
  view.kv_heads = kv_heads_;
  view.head_dim = head_dim_;
  return view;
}

void CudaKvCache::TruncateLayers(int slot, int a, int b, int len) {
  for (int l = std::max(a, first_layer_); l < std::min(b, end_layer_); ++l)
    lengths_[Index(l, slot)] = std::min(lengths_[Index(l, slot)], len);
}

}  // namespace layerskip::cuda
