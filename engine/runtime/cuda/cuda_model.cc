#include "engine/runtime/cuda/cuda_model.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/fill.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/swiglu.h"

namespace layerskip::cuda {

#define LS_OP(expr) LS_CUDA_RETURN_IF_ERROR(expr)

void UseNewKernels(CudaModelOptions* options) {
  options->gemv_plan = GemvPlanKind::kWide;
  options->head_argmax = true;
  options->fused_attention = true;
}

bool NewKernelsFromEnvironment() {
  const char* env = std::getenv("LAYERSKIP_CUDA_NEW_KERNELS");
  return env && std::strcmp(env, "1") == 0;
}

absl::Status CudaModel::Init(const LlamaConfig& config, WeightType type, int first_layer, int end_layer,
                             const CudaModelOptions& options) {
  config_ = config;
  options_ = options;
  type_ = type == WeightType::kBF16 ? DType::kBF16 : DType::kF32;
  first_layer_ = first_layer;
  end_layer_ = end_layer;
  if (options.max_batch <= 0 || options.max_positions <= 0)
    return absl::InvalidArgumentError("max_batch and max_positions must be positive");
  if (config.head_dim > kMaxHeadDim || config.head_dim % 2 != 0 ||
      config.num_attention_heads % config.num_key_value_heads != 0)
    return absl::InvalidArgumentError(absl::StrCat("the CUDA attention takes an even head_dim <= ", kMaxHeadDim,
                                                   " and heads divisible by kv heads"));
  LS_OP(cudaSetDevice(options.device));
  LS_OP(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

  // RoPE: the CPU table's values, so the device rotation is bitwise the CPU one.
  const cpu::RopeTable rope(config.rope(), options.max_positions);
  const size_t table = static_cast<size_t>(options.max_positions) * (config.head_dim / 2);
  LS_ASSIGN_OR_RETURN(rope_cos_, DeviceBuffer<float>::FromHost(rope.cos(0), table));
  LS_ASSIGN_OR_RETURN(rope_sin_, DeviceBuffer<float>::FromHost(rope.sin(0), table));

  const size_t B = options.max_batch, D = config.hidden_size, F = config.intermediate_size;
  LS_ASSIGN_OR_RETURN(h_, DeviceBuffer<float>::Alloc(B * D));
  LS_ASSIGN_OR_RETURN(q_, DeviceBuffer<float>::Alloc(B * config.q_dim()));
  LS_ASSIGN_OR_RETURN(k_, DeviceBuffer<float>::Alloc(B * config.kv_dim()));
  LS_ASSIGN_OR_RETURN(v_, DeviceBuffer<float>::Alloc(B * config.kv_dim()));
  LS_ASSIGN_OR_RETURN(qkv_, DeviceBuffer<float>::Alloc(B * (config.q_dim() + 2 * config.kv_dim())));
  LS_ASSIGN_OR_RETURN(att_, DeviceBuffer<float>::Alloc(B * config.q_dim()));
  LS_ASSIGN_OR_RETURN(gate_, DeviceBuffer<float>::Alloc(B * F));
  LS_ASSIGN_OR_RETURN(up_, DeviceBuffer<float>::Alloc(B * F));
  const int decode_tokens = std::min<int>(options.max_batch, kDecodeAttentionMaxTokens);
  LS_ASSIGN_OR_RETURN(attn_scratch_, DeviceBuffer<float>::Alloc(AttentionDecodeScratchFloats(
                                         decode_tokens, config.num_attention_heads, options.max_positions,
                                         config.head_dim)));
  if (options.fused_attention) {
    LS_ASSIGN_OR_RETURN(attn_counters_, DeviceBuffer<int>::Alloc(
                                            AttentionDecodeCounterInts(decode_tokens, config.num_key_value_heads)));
    LS_OP(cudaMemset(attn_counters_.get(), 0, attn_counters_.bytes()));
    LS_OP(cudaDeviceSynchronize());  // the legacy-stream memset before the model's stream reads them
  }
  if (options.head_argmax && options.kernels == CudaKernels::kFused) {
    LS_ASSIGN_OR_RETURN(head_scratch_, DeviceBuffer<float>::Alloc(GemvArgmaxScratchFloats(
                                           config.vocab_size, D, options.max_batch, options.gemv_plan)));
  }
  LS_ASSIGN_OR_RETURN(ids_, DeviceBuffer<int>::Alloc(B));
  LS_ASSIGN_OR_RETURN(slots_, DeviceBuffer<int>::Alloc(B));
  LS_ASSIGN_OR_RETURN(positions_, DeviceBuffer<int>::Alloc(B));
  const int group = config.num_attention_heads / config.num_key_value_heads;
  LS_ASSIGN_OR_RETURN(tiles_, DeviceBuffer<int>::Alloc(B * AttentionTileTokens(group)));
  layers_.resize(end_layer - first_layer);
  return absl::OkStatus();
}

absl::StatusOr<DeviceWeight> CudaModel::NewMatrix(int64_t rows, int64_t cols) {
  const size_t elem = type_ == DType::kBF16 ? 2 : 4;
  LS_ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> buf, DeviceBuffer<uint8_t>::Alloc(static_cast<size_t>(rows * cols) * elem));
  DeviceWeight w;
  w.type = type_;
  w.rows = rows;
  w.cols = cols;
  w.data = buf.get();
  storage_.push_back(std::move(buf));
  return w;
}

absl::StatusOr<DeviceWeight> CudaModel::NewStacked(const std::vector<int64_t>& rows, int64_t cols,
                                                   std::vector<DeviceWeight*> parts) {
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  LS_ASSIGN_OR_RETURN(DeviceWeight all, NewMatrix(total, cols));
  const size_t elem = type_ == DType::kBF16 ? 2 : 4;
  int64_t offset = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    *parts[i] = all;
    parts[i]->rows = rows[i];
    parts[i]->data = static_cast<const uint8_t*>(all.data) + static_cast<size_t>(offset * cols) * elem;
    offset += rows[i];
  }
  return all;
}

absl::StatusOr<DeviceWeight> CudaModel::Upload(const Matrix& m) {
  auto it = uploaded_.find(&m);
  if (it != uploaded_.end()) return it->second;
  LS_ASSIGN_OR_RETURN(DeviceWeight w, NewMatrix(m.rows(), m.cols()));
  LS_OP(cudaMemcpy(const_cast<void*>(w.data), m.data(), m.bytes(), cudaMemcpyHostToDevice));
  uploaded_[&m] = w;
  return w;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Create(const ModelWeights& weights,
                                                             const CudaModelOptions& options) {
  if (weights.int8_layers)  // int8 kernels exist for the CPU only (kernels/matmul_int8_cpu.cc)
    return absl::UnimplementedError("--weights int8 runs on the CPU only; use --weights bf16 or f32 on CUDA");
  std::unique_ptr<CudaModel> m(new CudaModel());
  LS_RETURN_IF_ERROR(m->Init(weights.config, weights.type, weights.first_layer, weights.end_layer, options));
  for (int l = weights.first_layer; l < weights.end_layer; ++l) {
    const LayerWeights& src = weights.layer(l);
    Layer& dst = m->layers_[l - weights.first_layer];
    LS_ASSIGN_OR_RETURN(dst.attn_norm, DeviceBuffer<float>::FromHost(src.attn_norm));
    LS_ASSIGN_OR_RETURN(dst.mlp_norm, DeviceBuffer<float>::FromHost(src.mlp_norm));
    // Q, K, V and gate, up stacked into one matrix each (one GEMV reads them), copied part by part.
    for (const Matrix* part : {src.wq.get(), src.wk.get(), src.wv.get(), src.w_gate.get(), src.w_up.get()})
      if (part->cols() != src.wq->cols() || part->type() != weights.type)
        return absl::InvalidArgumentError(absl::StrCat("layer ", l, ": projection shapes or types differ"));
    LS_ASSIGN_OR_RETURN(dst.wqkv, m->NewStacked({src.wq->rows(), src.wk->rows(), src.wv->rows()}, src.wq->cols(),
                                                {&dst.wq, &dst.wk, &dst.wv}));
    LS_ASSIGN_OR_RETURN(dst.w_gate_up, m->NewStacked({src.w_gate->rows(), src.w_up->rows()}, src.w_gate->cols(),
                                                     {&dst.w_gate, &dst.w_up}));
    const std::pair<const Matrix*, DeviceWeight*> parts[] = {{src.wq.get(), &dst.wq}, {src.wk.get(), &dst.wk},
                                                             {src.wv.get(), &dst.wv}, {src.w_gate.get(), &dst.w_gate},
                                                             {src.w_up.get(), &dst.w_up}};
    for (auto [from, to] : parts)
      LS_OP(cudaMemcpy(const_cast<void*>(to->data), from->data(), from->bytes(), cudaMemcpyHostToDevice));
    LS_ASSIGN_OR_RETURN(dst.wo, m->Upload(*src.wo));
    LS_ASSIGN_OR_RETURN(dst.w_down, m->Upload(*src.w_down));
  }
  if (weights.embed) {
    LS_ASSIGN_OR_RETURN(m->embed_, m->Upload(*weights.embed));
  }
  if (weights.lm_head && !weights.final_norm.empty()) {
    LS_ASSIGN_OR_RETURN(m->lm_head_, m->Upload(*weights.lm_head));
    LS_ASSIGN_OR_RETURN(m->final_norm_, DeviceBuffer<float>::FromHost(weights.final_norm));
  }
  LS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());  // the weight copies ran on the legacy stream
  return m;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::CreateRandom(const LlamaConfig& c, WeightType type,
                                                                   uint64_t seed, const CudaModelOptions& options) {
  std::unique_ptr<CudaModel> m(new CudaModel());
  LS_RETURN_IF_ERROR(m->Init(c, type, 0, c.num_hidden_layers, options));
  uint64_t stream_seed = seed * 1000003u;
  auto random = [&](int64_t rows, int64_t cols) -> absl::StatusOr<DeviceWeight> {
    LS_ASSIGN_OR_RETURN(DeviceWeight w, m->NewMatrix(rows, cols));
    LS_OP(FillRandom(m->type_, const_cast<void*>(w.data), rows * cols, ++stream_seed, 0.02f, m->stream_));
    return w;
  };
  auto ones = [&](int64_t n) -> absl::StatusOr<DeviceBuffer<float>> {
    LS_ASSIGN_OR_RETURN(DeviceBuffer<float> b, DeviceBuffer<float>::Alloc(n));
    LS_OP(FillConstant(b.get(), n, 1.0f, m->stream_));
    return b;
  };
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  auto fill = [&](const DeviceWeight& w) -> absl::Status {
    LS_OP(FillRandom(m->type_, const_cast<void*>(w.data), w.rows * w.cols, ++stream_seed, 0.02f, m->stream_));
    return absl::OkStatus();
  };
  for (Layer& l : m->layers_) {
    LS_ASSIGN_OR_RETURN(l.attn_norm, ones(D));
    LS_ASSIGN_OR_RETURN(l.mlp_norm, ones(D));
    LS_ASSIGN_OR_RETURN(l.wqkv, m->NewStacked({c.q_dim(), c.kv_dim(), c.kv_dim()}, D, {&l.wq, &l.wk, &l.wv}));
    LS_RETURN_IF_ERROR(fill(l.wq));
    LS_RETURN_IF_ERROR(fill(l.wk));
    LS_RETURN_IF_ERROR(fill(l.wv));
    LS_ASSIGN_OR_RETURN(l.wo, random(D, c.q_dim()));
    LS_ASSIGN_OR_RETURN(l.w_gate_up, m->NewStacked({F, F}, D, {&l.w_gate, &l.w_up}));
    LS_RETURN_IF_ERROR(fill(l.w_gate));
    LS_RETURN_IF_ERROR(fill(l.w_up));
    LS_ASSIGN_OR_RETURN(l.w_down, random(D, F));
  }
  LS_ASSIGN_OR_RETURN(m->embed_, random(c.vocab_size, D));
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    LS_ASSIGN_OR_RETURN(m->lm_head_, random(c.vocab_size, D));
  }
  LS_ASSIGN_OR_RETURN(m->final_norm_, ones(D));
  LS_RETURN_IF_ERROR(m->Synchronize());
  return m;
}

CudaModel::~CudaModel() {
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

int64_t CudaModel::decode_read_bytes() const {
  auto bytes = [](const DeviceWeight& w) {
    return w.data ? w.rows * w.cols * (w.type == DType::kBF16 ? 2 : 4) : int64_t{0};
  };
  int64_t total = bytes(lm_head_);
  for (const Layer& l : layers_)
    for (const DeviceWeight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) total += bytes(*w);
  return total;
}

absl::Status CudaModel::Embed(absl::Span<const int> ids, float* x) {
  if (!embed_.data) return absl::FailedPreconditionError("this model shard has no embedding");
  for (int id : ids)
    if (id < 0 || id >= vocab_size())
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
  for (size_t begin = 0; begin < ids.size(); begin += max_batch()) {
    const int n = static_cast<int>(std::min<size_t>(max_batch(), ids.size() - begin));
    LS_OP(cudaMemcpyAsync(ids_.get(), ids.data() + begin, n * sizeof(int), cudaMemcpyHostToDevice, stream_));
    LS_RETURN_IF_ERROR(EmbedDevice(ids_.get(), n, x + begin * hidden_size()));
  }
  return absl::OkStatus();
}

absl::Status CudaModel::EmbedDevice(const int* ids, int n, float* x) {
  if (!embed_.data) return absl::FailedPreconditionError("this model shard has no embedding");
  LS_OP(Embedding(ids, n, embed_, x, stream_));
  return Mark("embedding", 0);
}

absl::Status CudaModel::Forward(int a, int b, const TokenBatch& batch, float* x, CudaKvCache* cache) {
  std::map<int, int> next;  // per slot: the cache length after this call
  LS_RETURN_IF_ERROR(CheckTokenBatch(batch, a, b, num_layers(), first_layer_, end_layer_, max_positions(), *cache, &next));
  if (a == b) return absl::OkStatus();
  // Pieces of max_batch tokens, each through all layers of [a, b): a later piece attends to the K/V the
  // earlier ones wrote.
  const int group = config_.num_attention_heads / config_.num_key_value_heads;
  for (int begin = 0; begin < batch.size(); begin += max_batch()) {
    const int n = std::min(max_batch(), batch.size() - begin);
    LS_OP(cudaMemcpyAsync(slots_.get(), batch.slots.data() + begin, n * sizeof(int), cudaMemcpyHostToDevice, stream_));
    LS_OP(cudaMemcpyAsync(positions_.get(), batch.positions.data() + begin, n * sizeof(int), cudaMemcpyHostToDevice,
                          stream_));
    const int* tiles = nullptr;
    int num_tiles = 0;
    if (n > kDecodeAttentionMaxTokens) {
      const std::vector<int> host_tiles = AttentionTiles(batch.slots.data() + begin, n, group);
      num_tiles = static_cast<int>(host_tiles.size()) / AttentionTileTokens(group);
      LS_OP(cudaMemcpyAsync(tiles_.get(), host_tiles.data(), host_tiles.size() * sizeof(int), cudaMemcpyHostToDevice,
                            stream_));
      tiles = tiles_.get();
    }
    LS_RETURN_IF_ERROR(ForwardDevice(a, b, n, slots_.get(), positions_.get(),
                                     x + static_cast<size_t>(begin) * hidden_size(), cache, tiles, num_tiles));
  }
  for (const auto& [slot, len] : next)
    for (int l = a; l < b; ++l) cache->set_length(l, slot, len);
  return absl::OkStatus();
}

absl::Status CudaModel::ForwardDevice(int a, int b, int n, const int* slots, const int* positions, float* x,
                                      CudaKvCache* cache, const int* tiles, int num_tiles) {
  if (n > max_batch()) return absl::InvalidArgumentError(absl::StrCat(n, " tokens exceed max_batch ", max_batch()));
  if (!tiles && n > kDecodeAttentionMaxTokens)
    return absl::InvalidArgumentError("batches over kDecodeAttentionMaxTokens need prefill tiles");
  for (int l = a; l < b; ++l) LS_RETURN_IF_ERROR(LayerForward(l, n, slots, positions, tiles, num_tiles, x, cache));
  return absl::OkStatus();
}

absl::Status CudaModel::Mark(const char* name, int64_t bytes) {
  return profiler_ ? profiler_->Mark(name, bytes) : absl::OkStatus();
}

namespace {
int64_t Bytes(const DeviceWeight& w) { return w.rows * w.cols * (w.type == DType::kBF16 ? 2 : 4); }
// Bytes of K and V the attention of n tokens at most `positions` deep reads (an upper bound for the profile).
int64_t KvBytes(const KvLayerView& kv, int n, int positions) {
  return int64_t{2} * n * positions * kv.kv_heads * kv.head_dim * (kv.dtype == DType::kBF16 ? 2 : 4);
}
}  // namespace

absl::Status CudaModel::Attention(int n, const int* slots, const int* positions, const int* tiles, int num_tiles,
                                  const KvLayerView& kv, int capacity) {
  const int H = config_.num_attention_heads, KV = config_.num_key_value_heads;
  const int bound = std::min(capacity, max_positions());  // sizes the grid only
  if (tiles) {
    LS_OP(AttentionPrefill(q_.get(), tiles, num_tiles, AttentionTileTokens(H / KV), slots, positions, H, kv,
                           att_.get(), stream_));
  } else if (options_.fused_attention) {
    LS_OP(AttentionDecodeFused(q_.get(), n, slots, positions, H, bound, kv, attn_scratch_.get(), attn_counters_.get(),
                               att_.get(), stream_));
  } else {
    LS_OP(AttentionDecode(q_.get(), n, slots, positions, H, bound, kv, attn_scratch_.get(), att_.get(), stream_));
  }
  return Mark("attention", KvBytes(kv, n, bound));
}

// One decoder layer on x[n, D] (device), as Model::Layer:
//   x += o_proj(attention(rope(q_proj(norm(x))), rope(k_proj(norm(x))), v_proj(norm(x))))
//   x += down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
// kFused: each weight the decode GEMV takes (a property of its shape) runs it with the fused epilogue,
// else the legacy op sequence for that weight.
absl::Status CudaModel::LayerForward(int l, int n, const int* slots, const int* positions, const int* tiles,
                                     int num_tiles, float* x, CudaKvCache* cache) {
  if (options_.kernels == CudaKernels::kLegacy)
    return LayerForwardLegacy(l, n, slots, positions, tiles, num_tiles, x, cache);
  const LlamaConfig& c = config_;
  const Layer& w = layers_[l - first_layer_];
  const int D = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, hd = c.head_dim;
  const int64_t F = c.intermediate_size;
  const KvLayerView kv = cache->LayerView(l);
  const float eps = c.rms_norm_eps;
  const bool qkv_gemv = GemvSupported(w.wqkv, GemvEpilogue::kStore);
  const bool fold = options_.fold_norm && n <= kFoldNormMaxTokens;  // bitwise either way
  const bool fold_attn_norm = fold && qkv_gemv;
  if (!fold_attn_norm) {
    LS_OP(RmsNorm(x, w.attn_norm.get(), h_.get(), n, D, eps, stream_));
    LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
  }
  if (qkv_gemv) {
    if (fold_attn_norm) {  // [n, (H + 2KV) hd] = RmsNorm(x) [q; k; v]^T
      LS_OP(GemvPlanned(x, n, w.wqkv, GemvEpilogue::kStore, qkv_.get(), stream_, options_.gemv_plan, w.attn_norm.get(),
                        eps));
    } else {
      LS_OP(GemvPlanned(h_.get(), n, w.wqkv, GemvEpilogue::kStore, qkv_.get(), stream_, options_.gemv_plan));
    }
    LS_RETURN_IF_ERROR(Mark(fold_attn_norm ? "norm + gemv qkv" : "gemv qkv", Bytes(w.wqkv)));
    LS_OP(RopeStoreKv(qkv_.get(), n, H, slots, positions, rope_cos_.get(), rope_sin_.get(), q_.get(), kv, stream_));
    LS_RETURN_IF_ERROR(Mark("rope + store kv", 0));
  } else {
    for (auto [m, out] : {std::pair{&w.wq, q_.get()}, {&w.wk, k_.get()}, {&w.wv, v_.get()}}) {
      LS_OP(Matmul(h_.get(), n, *m, out, stream_));
      LS_RETURN_IF_ERROR(Mark("matmul qkv", Bytes(*m)));
    }
    LS_OP(ApplyRope(q_.get(), n, H, hd, positions, rope_cos_.get(), rope_sin_.get(), stream_));
    LS_OP(ApplyRope(k_.get(), n, KV, hd, positions, rope_cos_.get(), rope_sin_.get(), stream_));
    LS_OP(StoreKv(k_.get(), v_.get(), n, slots, positions, kv, stream_));
    LS_RETURN_IF_ERROR(Mark("rope + store kv", 0));
  }
  LS_RETURN_IF_ERROR(Attention(n, slots, positions, tiles, num_tiles, kv, cache->capacity()));
  if (GemvSupported(w.wo, GemvEpilogue::kAdd)) {
    LS_OP(GemvPlanned(att_.get(), n, w.wo, GemvEpilogue::kAdd, x, stream_, options_.gemv_plan));  // x += att wo^T
  } else {
    LS_OP(Matmul(att_.get(), n, w.wo, h_.get(), stream_));
    LS_OP(AddInPlace(x, h_.get(), static_cast<int64_t>(n) * D, stream_));
  }
  LS_RETURN_IF_ERROR(Mark("gemv o + residual", Bytes(w.wo)));
  const bool up_gemv = GemvSupported(w.w_gate_up, GemvEpilogue::kSwiGlu);
  const bool fold_mlp_norm = fold && up_gemv;
  if (!fold_mlp_norm) {
    LS_OP(RmsNorm(x, w.mlp_norm.get(), h_.get(), n, D, eps, stream_));
    LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
  }
  if (fold_mlp_norm) {  // [n, F] = swiglu(RmsNorm(x) [gate; up]^T)
    LS_OP(GemvPlanned(x, n, w.w_gate_up, GemvEpilogue::kSwiGlu, gate_.get(), stream_, options_.gemv_plan,
                      w.mlp_norm.get(), eps));
  } else if (up_gemv) {
    LS_OP(GemvPlanned(h_.get(), n, w.w_gate_up, GemvEpilogue::kSwiGlu, gate_.get(), stream_,
                      options_.gemv_plan));  // [n, F]
  } else {
    LS_OP(Matmul(h_.get(), n, w.w_gate, gate_.get(), stream_));
    LS_OP(Matmul(h_.get(), n, w.w_up, up_.get(), stream_));
    LS_OP(SwiGlu(gate_.get(), up_.get(), gate_.get(), n * F, stream_));
  }
  LS_RETURN_IF_ERROR(
      Mark(fold_mlp_norm ? "norm + gemv gate/up + swiglu" : "gemv gate/up + swiglu", Bytes(w.w_gate_up)));
  if (GemvSupported(w.w_down, GemvEpilogue::kAdd)) {
    LS_OP(GemvPlanned(gate_.get(), n, w.w_down, GemvEpilogue::kAdd, x, stream_,
                      options_.gemv_plan));  // x += swiglu w_down^T
  } else {
    LS_OP(Matmul(gate_.get(), n, w.w_down, h_.get(), stream_));
    LS_OP(AddInPlace(x, h_.get(), static_cast<int64_t>(n) * D, stream_));
  }
  return Mark("gemv down + residual", Bytes(w.w_down));
}

// The issue-7 sequence (CudaKernels::kLegacy): 17 launches, each op on its own.
absl::Status CudaModel::LayerForwardLegacy(int l, int n, const int* slots, const int* positions, const int* tiles,
                                           int num_tiles, float* x, CudaKvCache* cache) {
  const LlamaConfig& c = config_;
  const Layer& w = layers_[l - first_layer_];
  const int D = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, hd = c.head_dim;
  const int64_t F = c.intermediate_size;
  const KvLayerView kv = cache->LayerView(l);
  LS_OP(RmsNorm(x, w.attn_norm.get(), h_.get(), n, D, c.rms_norm_eps, stream_));
  LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
  LS_OP(Matmul(h_.get(), n, w.wq, q_.get(), stream_));  // q: [n, H*hd]
  LS_RETURN_IF_ERROR(Mark("matmul q", Bytes(w.wq)));
  LS_OP(Matmul(h_.get(), n, w.wk, k_.get(), stream_));  // k: [n, KV*hd]
  LS_RETURN_IF_ERROR(Mark("matmul k", Bytes(w.wk)));
  LS_OP(Matmul(h_.get(), n, w.wv, v_.get(), stream_));  // v: [n, KV*hd]
  LS_RETURN_IF_ERROR(Mark("matmul v", Bytes(w.wv)));
  LS_OP(ApplyRope(q_.get(), n, H, hd, positions, rope_cos_.get(), rope_sin_.get(), stream_));
  LS_OP(ApplyRope(k_.get(), n, KV, hd, positions, rope_cos_.get(), rope_sin_.get(), stream_));
  LS_RETURN_IF_ERROR(Mark("rope", 0));
  LS_OP(StoreKv(k_.get(), v_.get(), n, slots, positions, kv, stream_));
  LS_RETURN_IF_ERROR(Mark("store kv", 0));
  LS_RETURN_IF_ERROR(Attention(n, slots, positions, tiles, num_tiles, kv, cache->capacity()));
  LS_OP(Matmul(att_.get(), n, w.wo, h_.get(), stream_));  // [n, D]
  LS_RETURN_IF_ERROR(Mark("matmul o", Bytes(w.wo)));
  LS_OP(AddInPlace(x, h_.get(), static_cast<int64_t>(n) * D, stream_));
  LS_RETURN_IF_ERROR(Mark("residual add", 0));
  LS_OP(RmsNorm(x, w.mlp_norm.get(), h_.get(), n, D, c.rms_norm_eps, stream_));
  LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
  LS_OP(Matmul(h_.get(), n, w.w_gate, gate_.get(), stream_));  // [n, F]
  LS_RETURN_IF_ERROR(Mark("matmul gate", Bytes(w.w_gate)));
  LS_OP(Matmul(h_.get(), n, w.w_up, up_.get(), stream_));      // [n, F]
  LS_RETURN_IF_ERROR(Mark("matmul up", Bytes(w.w_up)));
  LS_OP(SwiGlu(gate_.get(), up_.get(), gate_.get(), n * F, stream_));
  LS_RETURN_IF_ERROR(Mark("swiglu", 0));
  LS_OP(Matmul(gate_.get(), n, w.w_down, h_.get(), stream_));  // [n, D]
  LS_RETURN_IF_ERROR(Mark("matmul down", Bytes(w.w_down)));
  LS_OP(AddInPlace(x, h_.get(), static_cast<int64_t>(n) * D, stream_));
  return Mark("residual add", 0);
}

absl::Status CudaModel::ExitHead(const float* h, int n, float* logits) {
  if (!lm_head_.data || final_norm_.size() == 0)
    return absl::FailedPreconditionError("this model shard has no exit head (final norm + LM head)");
  for (int begin = 0; begin < n; begin += max_batch()) {
    const int m = std::min(max_batch(), n - begin);
    const float* hb = h + static_cast<size_t>(begin) * hidden_size();
    float* out = logits + static_cast<size_t>(begin) * vocab_size();
    // The final norm stays a launch of its own: folded, each of the LM head's ~8000 blocks would re-read
    // the rows (1/8 of the head's bytes again, from L2) to save one launch per step.
    const bool gemv = options_.kernels == CudaKernels::kFused && GemvSupported(lm_head_, GemvEpilogue::kStore);
    LS_OP(RmsNorm(hb, final_norm_.get(), h_.get(), m, hidden_size(), config_.rms_norm_eps, stream_));
    LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
    if (gemv) {
      LS_OP(GemvPlanned(h_.get(), m, lm_head_, GemvEpilogue::kStore, out, stream_, options_.gemv_plan));
    } else {
      LS_OP(Matmul(h_.get(), m, lm_head_, out, stream_));
    }
    LS_RETURN_IF_ERROR(Mark("lm head", Bytes(lm_head_)));
  }
  return absl::OkStatus();
}

absl::Status CudaModel::Argmax(const float* logits, int n, int* ids) {
  LS_OP(cuda::Argmax(logits, n, vocab_size(), ids, stream_));
  return Mark("argmax", 0);
}

absl::Status CudaModel::ExitArgmax(const float* h, int n, float* logits, int* ids) {
  const bool fused = options_.head_argmax && options_.kernels == CudaKernels::kFused && lm_head_.data &&
                     final_norm_.size() > 0 && GemvSupported(lm_head_, GemvEpilogue::kStore);
  if (!fused) {
    LS_RETURN_IF_ERROR(ExitHead(h, n, logits));
    return Argmax(logits, n, ids);
  }
  for (int begin = 0; begin < n; begin += max_batch()) {
    const int m = std::min(max_batch(), n - begin);
    LS_OP(RmsNorm(h + static_cast<size_t>(begin) * hidden_size(), final_norm_.get(), h_.get(), m, hidden_size(),
                  config_.rms_norm_eps, stream_));
    LS_RETURN_IF_ERROR(Mark("rms_norm", 0));
    LS_OP(GemvArgmax(h_.get(), m, lm_head_, head_scratch_.get(), ids + begin, stream_, options_.gemv_plan));
    LS_RETURN_IF_ERROR(Mark("lm head + argmax", Bytes(lm_head_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaGraph>> CudaModel::CaptureDecodeStep(int n, int* ids, const int* slots,
                                                                        const int* positions, float* x,
                                                                        float* logits, CudaKvCache* cache) {
  if (n <= 0 || n > std::min(max_batch(), kDecodeAttentionMaxTokens))
    return absl::InvalidArgumentError(absl::StrCat("a captured decode step takes 1..",
                                                   std::min(max_batch(), kDecodeAttentionMaxTokens), " tokens"));
  if (first_layer_ != 0 || end_layer_ != num_layers() || !embed_.data || !lm_head_.data)
    return absl::FailedPreconditionError("a captured decode step needs the whole model");
  return CudaGraph::Capture(stream_, [&]() -> absl::Status {
    LS_RETURN_IF_ERROR(EmbedDevice(ids, n, x));
    LS_RETURN_IF_ERROR(ForwardDevice(0, num_layers(), n, slots, positions, x, cache));
    return ExitArgmax(x, n, logits, ids);
  });
}

absl::Status CudaModel::Synchronize() {
  LS_OP(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace layerskip::cuda
