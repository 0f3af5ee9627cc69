#pragma once
// The CPU backend: the Backend interface over the CPU Model (engine/runtime/model.h) and KvCache.
// Activations are host vectors, so Upload / Download are copies and the heads' argmax runs on the logits.
#include <memory>
#include <vector>

#include "engine/runtime/backend.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model.h"
#include "engine/util/thread_pool.h"

namespace layerskip {

// x[rows, D] in host memory.
class CpuActivations : public Activations {
 public:
  CpuActivations(int rows, int width) : Activations(rows, width), data_(static_cast<size_t>(rows) * width) {}
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float* row(int i) { return data_.data() + static_cast<size_t>(i) * width_; }
  const float* row(int i) const { return data_.data() + static_cast<size_t>(i) * width_; }

 private:
  std::vector<float> data_;
};

class CpuBackend : public Backend {
 public:
  // Owns everything: a thread pool of `threads` (0: all cores), the model over weights' loaded layers and a
  // KV cache of those layers with num_slots x capacity positions.
  static std::unique_ptr<CpuBackend> Create(std::shared_ptr<const ModelWeights> weights, int num_slots, int capacity,
                                            int threads);
  // Borrows `model` (its pool and draft vocabulary) and owns a KV cache of its loaded layers.
  CpuBackend(Model* model, int num_slots, int capacity);
  // Borrows both (tests that look into the cache).
  CpuBackend(Model* model, KvCache* cache);

  const DeviceSpec& device() const override { return device_; }
  const LlamaConfig& config() const override { return model_->config(); }
  int first_layer() const override { return cache_->first_layer(); }
  int end_layer() const override { return cache_->end_layer(); }
  bool has_embedding() const override { return model_->weights().embed != nullptr; }
  bool has_head() const override { return model_->weights().lm_head != nullptr && !model_->weights().final_norm.empty(); }
  int max_positions() const override { return model_->max_positions(); }

  absl::StatusOr<std::unique_ptr<Activations>> NewActivations(int rows) override;
  absl::Status Upload(const float* host, Activations& x) override;
  absl::Status Download(const Activations& x, float* host) override;
  absl::Status CopyRows(const Activations& src, int src_row, int n, Activations& dst, int dst_row) override;

  absl::Status Embed(absl::Span<const int> ids, Activations& x) override;
  absl::Status Forward(int a, int b, const TokenBatch& batch, Activations& x) override;
  absl::Status ExitHead(const Activations& h, absl::Span<const int> rows, float* logits) override;
  absl::Status ExitArgmax(const Activations& h, absl::Span<const int> rows, int* ids) override;
  absl::Status DraftHead(const Activations& h, absl::Span<const int> rows, float* logits) override;
  absl::Status DraftArgmax(const Activations& h, absl::Span<const int> rows, int* ids) override;
  absl::Status SetDraftVocabulary(std::vector<int> ids) override { return model_->SetDraftVocabulary(std::move(ids)); }
  int draft_vocab_size() const override { return model_->draft_vocab_size(); }

  int num_slots() const override { return cache_->num_slots(); }
  int capacity() const override { return cache_->capacity(); }
  int length(int layer, int slot) const override { return cache_->length(layer, slot); }
  void Truncate(int slot, int len) override { cache_->Truncate(slot, len); }
  void TruncateLayers(int slot, int a, int b, int len) override { cache_->TruncateLayers(slot, a, b, len); }
  int64_t kv_cache_bytes() const override;

  Model& model() { return *model_; }
  const KvCache& cache() const { return *cache_; }

 private:
  // h's rows `rows` gathered into one host block [rows.size(), D].
  absl::StatusOr<std::vector<float>> Gather(const Activations& h, absl::Span<const int> rows) const;

  DeviceSpec device_;
  std::unique_ptr<ThreadPool> own_pool_;
  std::unique_ptr<Model> own_model_;
  Model* model_;
  std::unique_ptr<KvCache> own_cache_;
  KvCache* cache_;
};

// The backend's activations as CPU ones; a handle from another backend is a programming error
// (FailedPrecondition through the callers' checks).
const CpuActivations* AsCpu(const Activations& x);
CpuActivations* AsCpu(Activations& x);

}  // namespace layerskip
