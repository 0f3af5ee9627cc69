#pragma once
// The CUDA backend: the Backend interface (engine/runtime/backend.h) over CudaModel and CudaKvCache on one
// device. Activations are device buffers from a small pool; the heads' argmax runs on the device and only
// ids come back; logits come to the host only when asked (sampling, adaptive drafting). All work runs on
// the model's stream; each call selects the backend's device first, so any thread may drive it (one at a
// time).
//
// Fast path (DecodeArgmax): a step of at most 64 tokens (a decode step of up to 64 sequences, a drafting
// pass) is padded to a batch-size bucket (1, 2, 4, ..., 64; the pad rows repeat the last token, so they
// write the same K/V to the same place) and runs as one CUDA graph captured per (bucket, layer count):
// embed, layers [0, b), exit head, argmax. The first use of a bucket runs eagerly (kernel set-up), the
// second captures. Longer steps (prefill) run eagerly. LAYERSKIP_CUDA_GRAPHS=0 turns the graphs off.
// LAYERSKIP_CUDA_NEW_KERNELS=1: the model runs issue 17's not-yet-default kernels (UseNewKernels; the argmax
// in the LM head, the wide GEMV plan, one-kernel decode attention; docs/cuda.md).
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/weights.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/cuda/cuda_kv_cache.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "kernels/cuda_common.h"

namespace layerskip::cuda {

// OK when cuda:index can be used; else FailedPrecondition "cuda:N: no CUDA device (cudaGetDeviceCount: ...)"
// or "cuda:N: no such device (this machine has M)".
absl::Status ProbeDevice(int index);

class CudaBackend;

// x[rows, D] f32 in device memory; its buffer goes back to the backend's pool when the handle dies.
class CudaActivations : public Activations {
 public:
  CudaActivations(CudaBackend* owner, DeviceBuffer<float> buffer, int rows, int width)
      : Activations(rows, width), owner_(owner), buffer_(std::move(buffer)) {}
  ~CudaActivations() override;
  float* data() const { return buffer_.get(); }
  float* row(int i) const { return buffer_.get() + static_cast<size_t>(i) * width_; }

 private:
  CudaBackend* owner_;
  DeviceBuffer<float> buffer_;
};

class CudaBackend : public Backend {
 public:
  // Uploads the weights' loaded layers (+ embedding, exit head) to `device` and allocates a KV cache of
  // those layers with num_slots x capacity positions there.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const ModelWeights& weights, const DeviceSpec& device,
                                                             int num_slots, int capacity);
  ~CudaBackend() override;

  const DeviceSpec& device() const override { return device_; }
  const LlamaConfig& config() const override { return model_->config(); }
  int first_layer() const override { return first_layer_; }
  int end_layer() const override { return end_layer_; }
  bool has_embedding() const override { return has_embedding_; }
  bool has_head() const override { return has_head_; }
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
  absl::Status DecodeArgmax(int b, const TokenBatch& batch, absl::Span<const int> ids, bool draft,
                            absl::Span<const int> head_rows, int* out, std::unique_ptr<Activations>* x_out) override;
  absl::Status Synchronize() override;
  absl::Status SetDraftVocabulary(std::vector<int> ids) override;
  int draft_vocab_size() const override;

  int num_slots() const override { return cache_->num_slots(); }
  int capacity() const override { return cache_->capacity(); }
  int length(int layer, int slot) const override { return cache_->length(layer, slot); }
  void Truncate(int slot, int len) override { cache_->Truncate(slot, len); }
  void TruncateLayers(int slot, int a, int b, int len) override { cache_->TruncateLayers(slot, a, b, len); }
  int64_t kv_cache_bytes() const override { return static_cast<int64_t>(cache_->bytes()); }

  CudaModel& model() { return *model_; }
  CudaKvCache& cache() { return *cache_; }
  // The decode fast path's CUDA graphs: on by default (LAYERSKIP_CUDA_GRAPHS=0: off); how many were captured.
  void set_use_graphs(bool on) { use_graphs_ = on; }
  int graphs_captured() const;

 private:
  friend class CudaActivations;
  CudaBackend() = default;
  absl::Status Select() const;  // cudaSetDevice(device_.index)
  // A device pointer to rows `rows` of h, contiguous: h itself when the rows are a consecutive run, else
  // a gather into *scratch.
  absl::StatusOr<const float*> RowsOf(const Activations& h, absl::Span<const int> rows,
                                      std::unique_ptr<Activations>* scratch);
  // Rows h (device pointer to [n, D]) in chunks of kHeadChunk, the size of logits_ and ids_:
  // `each(chunk rows, begin, m)` runs the head on each chunk and copies out its result; then a sync.
  template <typename Each>
  absl::Status HeadChunks(const float* h, int n, Each each);
  void Recycle(DeviceBuffer<float> buffer);
  // The fast path's device work on the step_* buffers for `bucket` rows: capturable (device pointers only).
  absl::Status EnqueueStep(int b, int bucket);

  // A step's graph per (bucket, b): run eagerly once, then captured; failed: eager from then on.
  struct StepGraph {
    cudaGraphExec_t exec = nullptr;
    bool warmed = false, failed = false;
  };

  static constexpr int kHeadChunk = 32;
  DeviceSpec device_;
  int first_layer_ = 0, end_layer_ = 0;
  bool has_embedding_ = false, has_head_ = false;
  std::unique_ptr<CudaModel> model_;
  std::unique_ptr<CudaKvCache> cache_;
  DeviceBuffer<float> logits_;  // [kHeadChunk, V]
  DeviceBuffer<int> ids_;       // [kHeadChunk]
  std::vector<DeviceBuffer<float>> pool_;  // free activation buffers
  std::vector<int> draft_ids_;             // the draft vocabulary (empty: the full head)
  std::vector<char> in_draft_;             // [V]: 1 for ids in the draft vocabulary
  bool use_graphs_ = true;
  std::map<std::pair<int, int>, StepGraph> graphs_;  // (bucket, b)
  // The fast path's buffers, shared by every graph (one stream orders their uses).
  DeviceBuffer<int> step_ids_, step_slots_, step_positions_, step_out_;  // [kDecodeAttentionMaxTokens]
  DeviceBuffer<float> step_x_, step_logits_;  // [kDecodeAttentionMaxTokens, D], [kDecodeAttentionMaxTokens, V]
};

}  // namespace layerskip::cuda
