// LoadModelWeights: Hugging Face Llama safetensors checkpoints -> ModelWeights (a layer range of them).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/checkpoint_limits.h"
#include "engine/model/mapped_pages.h"
#include "engine/model/quantize_int8.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "engine/util/bf16.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

// Converts src[begin, end) (any stored dtype, possibly unaligned) to f32 or bf16 bits in `out`.
void ConvertRange(const TensorView& src, bool to_bf16, void* out, int64_t begin, int64_t end) {
  const uint8_t* p = src.data;
  if (to_bf16 && src.dtype == DType::kBF16) {  // same representation: copy
    std::memcpy(static_cast<uint16_t*>(out) + begin, p + begin * 2, static_cast<size_t>(end - begin) * 2);
    return;
  }
  if (!to_bf16 && src.dtype == DType::kF32) {
    std::memcpy(static_cast<float*>(out) + begin, p + begin * 4, static_cast<size_t>(end - begin) * 4);
    return;
  }
  for (int64_t i = begin; i < end; ++i) {
    float f;
    if (src.dtype == DType::kF32) {
      std::memcpy(&f, p + i * 4, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      f = src.dtype == DType::kF16 ? F16ToF32(h) : Bf16ToF32(h);
    }
    if (to_bf16) {
      static_cast<uint16_t*>(out)[i] = F32ToBf16(f);  // round to nearest even
    } else {
      static_cast<float*>(out)[i] = f;  // exact
    }
  }
}

// Converts the whole tensor, in parallel when it is large.
void Convert(const TensorView& src, bool to_bf16, void* out) {
  const int64_t n = src.numel();
  constexpr int64_t kPerThread = 1 << 20;
  unsigned hc = std::thread::hardware_concurrency();
  const int64_t threads = std::clamp<int64_t>(std::min<int64_t>(hc == 0 ? 2 : hc, 16), 1, std::max<int64_t>(1, n / kPerThread));
  if (threads <= 1) {
    ConvertRange(src, to_bf16, out, 0, n);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (n + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = t * per, e = std::min(n, b + per);
    if (b < e) pool.emplace_back(ConvertRange, std::cref(src), to_bf16, out, b, e);
  }
  ConvertRange(src, to_bf16, out, 0, std::min(n, per));
  for (auto& th : pool) th.join();
}

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// Row r of a [rows, cols] tensor (any stored dtype, possibly unaligned) as f32.
void RowToF32(const TensorView& src, int64_t r, int64_t cols, float* out) {
  const uint8_t* p = src.data + static_cast<size_t>(r * cols) * DTypeSize(src.dtype);
  if (src.dtype == DType::kF32) {
    std::memcpy(out, p, static_cast<size_t>(cols) * 4);
    return;
  }
  int64_t i = 0;
  if (src.dtype == DType::kBF16)  // widen 8 at a time (exact)
    for (; i + 8 <= cols; i += 8)
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                    _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i * 2))), 16)));
  for (; i < cols; ++i) {
    uint16_t h;
    std::memcpy(&h, p + i * 2, 2);
    out[i] = src.dtype == DType::kF16 ? F16ToF32(h) : Bf16ToF32(h);
  }
}

int LoadThreads() {
  const unsigned hc = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hc == 0 ? 2u : hc, 1u, 16u));
}

class Loader {
 public:
  Loader(const std::filesystem::path& dir, std::shared_ptr<const CheckpointFiles> files, const LoadOptions& options,
         LoadStats& stats)
      : dir_(dir), files_(std::move(files)), options_(options), stats_(stats) {}

  // Finds `name` and checks its shape; NotFound / InvalidArgument name the tensor and the file.
  absl::StatusOr<const TensorView*> Get(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView* t = files_->Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat("tensor '", name, "' missing from the checkpoint in ", dir_.string()));
    }
    if (t->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", files_->FileOf(name).string(), ": expected shape ",
                                                     ShapeString(shape), " (from config.json), got ", ShapeString(t->shape)));
    }
    return t;
  }

  // A matrix in the load's type: in place in the mapping when the stored dtype is that type and the data is
  // aligned to the element size; else converted into a private copy (then the source pages are released).
  // `layer`: a layer's linear weight, quantised to int8 when options.int8_layers.
  absl::StatusOr<std::unique_ptr<Matrix>> LoadMatrix(const std::string& name, int64_t rows, int64_t cols, bool layer) {
    LS_ASSIGN_OR_RETURN(const TensorView* t, Get(name, {rows, cols}));
    std::unique_ptr<Matrix> m;
    if (layer && options_.int8_layers) {
      m = QuantizeInt8(rows, cols, [t, cols](int64_t r, float* out) { RowToF32(*t, r, cols, out); }, LoadThreads());
    } else {
      const bool same = (options_.type == WeightType::kBF16 && t->dtype == DType::kBF16) ||
                        (options_.type == WeightType::kF32 && t->dtype == DType::kF32);
      const bool aligned = reinterpret_cast<uintptr_t>(t->data) % DTypeSize(t->dtype) == 0;
      if (same && options_.in_place && aligned) {
        m = std::make_unique<Matrix>(options_.type, rows, cols, t->data, files_);
        stats_.in_place_bytes += m->bytes();
        in_place_.emplace_back(t->data, t->nbytes);
        return m;
      }
      if (same && options_.in_place) ++stats_.misaligned;
      m = std::make_unique<Matrix>(options_.type, rows, cols);
      Convert(*t, options_.type == WeightType::kBF16, m->data());
    }
    stats_.copied_bytes += m->bytes();
    ReleasePages(t->data, t->nbytes);
    return m;
  }

  absl::StatusOr<std::vector<float>> LoadNorm(const std::string& name, int64_t n) const {  // always f32
    LS_ASSIGN_OR_RETURN(const TensorView* t, Get(name, {n}));
    std::vector<float> v(static_cast<size_t>(n));
    Convert(*t, false, v.data());
    return v;
  }

  // Faults in the in-place matrices' pages in parallel (they are read on every token).
  void PageInInPlace() const { PageIn(in_place_, LoadThreads()); }

 private:
  std::filesystem::path dir_;
  std::shared_ptr<const CheckpointFiles> files_;
  LoadOptions options_;
  LoadStats& stats_;
  std::vector<std::pair<const uint8_t*, size_t>> in_place_;
};

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const std::filesystem::path& dir, const LoadOptions& options) {
  LS_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(dir));
  const int L = config.num_hidden_layers;
  const int first = options.first_layer, end = options.end_layer < 0 ? L : options.end_layer;
  if (first < 0 || first > end || end > L) {
    return absl::InvalidArgumentError(absl::StrCat("LoadOptions: layer range [", options.first_layer, ", ", options.end_layer,
                                                   ") is not within [0, ", L, "] (num_hidden_layers in ", (dir / "config.json").string(), ")"));
  }
  if (options.type == WeightType::kInt8)
    return absl::InvalidArgumentError("LoadOptions: type must be bf16 or f32 (int8 is int8_layers)");
  const auto start = std::chrono::steady_clock::now();
  LS_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointFiles> opened, CheckpointFiles::Open(dir));
  std::shared_ptr<const CheckpointFiles> files = std::move(opened);  // in-place matrices keep it alive
  // Layer count, every tensor's presence and shape, and memory: all before the first allocation.
  LS_RETURN_IF_ERROR(CheckCheckpoint(dir, config, *files, options, first, end));
  LoadStats stats;
  Loader loader(dir, files, options, stats);

  ModelWeights w;
  w.config = config;
  w.type = options.type;
  w.int8_layers = options.int8_layers;
  w.first_layer = first;
  w.end_layer = end;
  const int64_t D = config.hidden_size, F = config.intermediate_size, V = config.vocab_size;
  const int64_t Q = config.q_dim(), KV = config.kv_dim();

  // The embedding [V, D] also serves as the head when tied.
  if (options.embedding || (options.head && config.tie_word_embeddings)) {
    LS_ASSIGN_OR_RETURN(std::unique_ptr<Matrix> embed, loader.LoadMatrix("model.embed_tokens.weight", V, D, false));
    std::shared_ptr<const Matrix> shared = std::move(embed);
    if (options.embedding) w.embed = shared;
    if (options.head && config.tie_word_embeddings) w.lm_head = shared;
  }
  w.layers.resize(static_cast<size_t>(end - first));
  for (int l = first; l < end; ++l) {
    LayerWeights& lw = w.layers[static_cast<size_t>(l - first)];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LS_ASSIGN_OR_RETURN(lw.attn_norm, loader.LoadNorm(p + "input_layernorm.weight", D));              // [D]
    LS_ASSIGN_OR_RETURN(lw.wq, loader.LoadMatrix(p + "self_attn.q_proj.weight", Q, D, true));              // [H*hd, D]
    LS_ASSIGN_OR_RETURN(lw.wk, loader.LoadMatrix(p + "self_attn.k_proj.weight", KV, D, true));             // [KV*hd, D]
    LS_ASSIGN_OR_RETURN(lw.wv, loader.LoadMatrix(p + "self_attn.v_proj.weight", KV, D, true));             // [KV*hd, D]
    LS_ASSIGN_OR_RETURN(lw.wo, loader.LoadMatrix(p + "self_attn.o_proj.weight", D, Q, true));              // [D, H*hd]
    LS_ASSIGN_OR_RETURN(lw.mlp_norm, loader.LoadNorm(p + "post_attention_layernorm.weight", D));     // [D]
    LS_ASSIGN_OR_RETURN(lw.w_gate, loader.LoadMatrix(p + "mlp.gate_proj.weight", F, D, true));             // [F, D]
    LS_ASSIGN_OR_RETURN(lw.w_up, loader.LoadMatrix(p + "mlp.up_proj.weight", F, D, true));                 // [F, D]
    LS_ASSIGN_OR_RETURN(lw.w_down, loader.LoadMatrix(p + "mlp.down_proj.weight", D, F, true));             // [D, F]
  }
  if (options.head) {
    LS_ASSIGN_OR_RETURN(w.final_norm, loader.LoadNorm("model.norm.weight", D));  // [D]
    if (!config.tie_word_embeddings) {
      if (files->Find("lm_head.weight") == nullptr) {
        return absl::NotFoundError(absl::StrCat("tensor 'lm_head.weight' missing from the checkpoint in ", dir.string(),
                                                " and config.json has tie_word_embeddings = false"));
      }
      LS_ASSIGN_OR_RETURN(std::unique_ptr<Matrix> head, loader.LoadMatrix("lm_head.weight", V, D, false));  // [V, D]
      w.lm_head = std::move(head);
    }
  }
  loader.PageInInPlace();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.stats != nullptr) *options.stats = stats;
  return w;
}

}  // namespace layerskip
