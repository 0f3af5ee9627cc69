#pragma once
// The Llama forward pass on one CUDA device, mirroring engine/runtime/model.h: weights (bf16 or f32
// matrices, f32 norms), the RoPE table, and per-call scratch live in device memory; Embed, Forward over a
// layer range and ExitHead take device buffers. Host <-> device copies happen once per call (token ids,
// slots and positions), never per layer. All work is enqueued on the model's stream; results are ready
// after Synchronize() (or any later synchronous copy on that stream).
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/weights.h"
#include "engine/runtime/cuda/cuda_graph.h"
#include "engine/runtime/cuda/cuda_kv_cache.h"
#include "engine/runtime/cuda/cuda_profile.h"
#include "engine/runtime/model.h"
#include "kernels/attention.h"
#include "kernels/cuda_common.h"
#include "kernels/device_weight.h"
#include "kernels/gemv_plan.h"

namespace layerskip::cuda {

// Which kernels a layer runs (docs/cuda.md). Fixed for the life of a model, and within kFused the kernel of
// each weight is chosen by its shape only, so a token's results are bitwise the same at every batch size.
enum class CudaKernels {
  // The decode GEMV (kernels/gemv_cuda.cu) for every weight it takes: Q, K, V as one GEMV over the
  // concatenated weights then RoPE + KV store in one kernel; gate and up as one GEMV with SwiGLU in its
  // epilogue; o_proj and down_proj adding into the residual stream in their epilogues; the RMSNorms folded
  // into the GEMVs after them for calls of <= kFoldNormMaxTokens tokens (fold_norm). 7 launches a layer,
  // 9 without the fold.
  kFused,
  // The issue-7 kernels: one Matmul per weight, separate RoPE, StoreKv, SwiGLU and residual adds
  // (17 launches a layer). The fallback if kFused is wrong on some device.
  kLegacy,
};

struct CudaModelOptions {
  int device = 0;             // cuda:N
  int max_positions = 2048;   // the largest position + 1 used with this model (RoPE table, decode scratch)
  int max_batch = 256;        // tokens per kernel launch; longer batches run in pieces
  CudaKernels kernels = CudaKernels::kFused;
  // kFused only: RMSNorm folded into the GEMV that reads its output (QKV, gate/up, LM head; bitwise the
  // separate RmsNorm + GEMV, one launch fewer each) for calls of at most kFoldNormMaxTokens tokens. false:
  // always a separate RmsNorm launch, as before.
  bool fold_norm = true;
  // Issue 17, written but not yet run on a GPU (docs/cuda.md, "Issue 17: prepared, not yet run"); each
  // defaults to the verified path, and each keeps a token's results bitwise the same at every batch size.
  // kFused: the split-K rule of every decode GEMV (kWide: more warps in flight for q/k/v and o; a different
  // but fixed order per shape, so its logits differ from kDefault's by rounding; kWidePdl: kWide launched
  // with programmatic dependent launch, bitwise kWide; not part of UseNewKernels).
  GemvPlanKind gemv_plan = GemvPlanKind::kDefault;
  // kFused: ExitArgmax (greedy steps) runs the LM head with an argmax epilogue (GemvArgmax), never writing
  // the [n, V] logits; the ids equal ExitHead + Argmax bitwise.
  bool head_argmax = false;
  // The split-K decode attention as one kernel (AttentionDecodeFused: the last chunk block folds); bitwise
  // the two-kernel AttentionDecode.
  bool fused_attention = false;
};

// Turns on the issue-17 options above: gemv_plan = kWide, head_argmax, fused_attention (cuda_bench
// --new-kernels; the CUDA backend when the environment has LAYERSKIP_CUDA_NEW_KERNELS=1).
void UseNewKernels(CudaModelOptions* options);
// Whether LAYERSKIP_CUDA_NEW_KERNELS=1 is set (the CUDA backend's switch, for the GPU tests and run.sh).
bool NewKernelsFromEnvironment();

// Every block of a folded-norm GEMV re-reads its tokens' rows of x (from L2): worth a launch for 1-2
// tokens, not for a 16-token tile (as many bytes as the weights). The two ways are bitwise equal, so
// choosing by the token count keeps batch invariance.
constexpr int kFoldNormMaxTokens = 2;

// Attention for batches up to this many tokens uses the split-K decode kernel, larger ones the tiled
// prefill kernel (the two are bitwise equal, so this only picks the faster one).
constexpr int kDecodeAttentionMaxTokens = 64;

class CudaModel {
 public:
  // Uploads the weights (every loaded layer, and the embedding / exit head when present) to options.device.
  static absl::StatusOr<std::unique_ptr<CudaModel>> Create(const ModelWeights& weights,
                                                           const CudaModelOptions& options);
  // A whole model with random weights made on the device (normal * 0.02, norms 1): benchmarks of large shapes
  // with no host copy.
  static absl::StatusOr<std::unique_ptr<CudaModel>> CreateRandom(const LlamaConfig& config, WeightType type,
                                                                 uint64_t seed, const CudaModelOptions& options);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const LlamaConfig& config() const { return config_; }
  int num_layers() const { return config_.num_hidden_layers; }
  int hidden_size() const { return config_.hidden_size; }
  int vocab_size() const { return config_.vocab_size; }
  int max_positions() const { return options_.max_positions; }
  int max_batch() const { return options_.max_batch; }
  int device() const { return options_.device; }
  cudaStream_t stream() const { return stream_; }
  // Bytes of weights one decode step reads: every layer matrix and the LM head (as `layerskip bench`).
  int64_t decode_read_bytes() const;

  // x[n, D] (device) = embedding rows of ids[n] (host). InvalidArgument for an id outside [0, V).
  absl::Status Embed(absl::Span<const int> ids, float* x);
  // The same with ids already on the device (unchecked: they come from Argmax).
  absl::Status EmbedDevice(const int* ids, int n, float* x);

  // Runs layers [a, b) in place on x[n, D] (device) for the tokens of `batch`, with the CPU Model's checks
  // (loaded layers, cache range, each slot continuing at its length in every layer, capacity), and updates
  // the cache lengths.
  absl::Status Forward(int a, int b, const TokenBatch& batch, float* x, CudaKvCache* cache);

  // The device-only path of Forward for n <= max_batch tokens whose slots[n] and positions[n] are already
  // on the device: no checks, no host copies, no length updates (the caller keeps the lengths), so it can
  // be captured in a CUDA graph. tiles: AttentionTiles of the batch on the device, or null to use the
  // split-K decode attention (n <= kDecodeAttentionMaxTokens).
  absl::Status ForwardDevice(int a, int b, int n, const int* slots, const int* positions, float* x,
                             CudaKvCache* cache, const int* tiles = nullptr, int num_tiles = 0);

  // logits[n, V] = lm_head(final_norm(h[n, D])), all on the device.
  absl::Status ExitHead(const float* h, int n, float* logits);
  // ids[n] (device) = argmax of each row of logits[n, V] (device).
  absl::Status Argmax(const float* logits, int n, int* ids);
  // ids[n] (device) = Argmax(ExitHead(h)): with head_argmax (and an LM head the decode GEMV takes) in one
  // GEMV with an argmax epilogue, `logits` [n, V] then left as it was; else ExitHead into logits, Argmax.
  absl::Status ExitArgmax(const float* h, int n, float* logits, int* ids);

  absl::Status Synchronize();

  // One decode step captured as a CUDA graph on the model's stream: EmbedDevice(ids) -> ForwardDevice(0,
  // num_layers) -> ExitArgmax into ids (head_argmax: logits not written), for n <= kDecodeAttentionMaxTokens
  // tokens at fixed device buffers ids[n], slots[n], positions[n], x[n, D], logits[n, V]. Each
  // Launch(stream()) runs the step with the buffers' current contents (argmax overwrites ids, so replays
  // decode on); the caller writes the next positions on stream() before each launch and keeps the cache
  // lengths. Needs the whole model.
  absl::StatusOr<std::unique_ptr<CudaGraph>> CaptureDecodeStep(int n, int* ids, const int* slots,
                                                               const int* positions, float* x, float* logits,
                                                               CudaKvCache* cache);

  // While set, every op the model enqueues is followed by profiler->Mark(op name, bytes it reads).
  void set_profiler(KernelProfiler* profiler) { profiler_ = profiler; }
  CudaKernels kernels() const { return options_.kernels; }
  const CudaModelOptions& options() const { return options_; }

 private:
  struct Layer {
    DeviceBuffer<float> attn_norm, mlp_norm;  // [D]
    // wqkv = [wq; wk; wv] and w_gate_up = [w_gate; w_up] hold the storage; the single-matrix views point
    // into them (the kLegacy kernels use those).
    DeviceWeight wqkv, w_gate_up;
    DeviceWeight wq, wk, wv, wo, w_gate, w_up, w_down;
  };
  CudaModel() = default;
  absl::Status Init(const LlamaConfig& config, WeightType type, int first_layer, int end_layer,
                    const CudaModelOptions& options);
  // Allocates a [rows, cols] matrix of the model's type and returns its view.
  absl::StatusOr<DeviceWeight> NewMatrix(int64_t rows, int64_t cols);
  absl::StatusOr<DeviceWeight> Upload(const Matrix& m);
  // Allocates one matrix of the parts' rows stacked ([a; b; ...]) and returns it with each part's view.
  absl::StatusOr<DeviceWeight> NewStacked(const std::vector<int64_t>& rows, int64_t cols,
                                          std::vector<DeviceWeight*> parts);
  absl::Status Mark(const char* name, int64_t bytes);
  absl::Status LayerForwardLegacy(int l, int n, const int* slots, const int* positions, const int* tiles,
                                  int num_tiles, float* x, CudaKvCache* cache);
  absl::Status Attention(int n, const int* slots, const int* positions, const int* tiles, int num_tiles,
                         const KvLayerView& kv, int capacity);
  absl::Status LayerForward(int l, int n, const int* slots, const int* positions, const int* tiles, int num_tiles,
                            float* x, CudaKvCache* cache);

  LlamaConfig config_;
  CudaModelOptions options_;
  DType type_ = DType::kBF16;
  int first_layer_ = 0, end_layer_ = 0;
  cudaStream_t stream_ = nullptr;
  std::vector<DeviceBuffer<uint8_t>> storage_;  // every matrix
  std::map<const Matrix*, DeviceWeight> uploaded_;  // tied embedding / LM head: uploaded once
  std::vector<Layer> layers_;
  DeviceWeight embed_, lm_head_;                  // data == nullptr when not loaded
  DeviceBuffer<float> final_norm_;                // empty when not loaded
  DeviceBuffer<float> rope_cos_, rope_sin_;       // [max_positions, head_dim/2]
  // Scratch for max_batch tokens.
  DeviceBuffer<float> h_, q_, k_, v_, qkv_, att_, gate_, up_, attn_scratch_;
  DeviceBuffer<float> head_scratch_;  // head_argmax: GemvArgmax's candidates for max_batch tokens
  DeviceBuffer<int> attn_counters_;   // fused_attention: [decode tokens, kv_heads], zero between calls
  KernelProfiler* profiler_ = nullptr;
  DeviceBuffer<int> ids_, slots_, positions_, tiles_;
};

}  // namespace layerskip::cuda
