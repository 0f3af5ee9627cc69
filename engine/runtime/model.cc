#include "engine/runtime/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"
#include "kernels/aligned_buffer.h"
#include "kernels/attention.h"
#include "kernels/cpu_features.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"

namespace layerskip {
namespace {

// Rows [begin, begin + count) of a batch whose roles run on one kernel path.
struct RowRun {
  int begin, count;
  cpu::CpuKernels path;
};

// The batch's maximal runs of rows on one path (kernels/cpu_features.h CpuKernelPair: prompt rows on the
// prompt path, the others on the generated path); one run when both roles share a path. The kernels are
// row-independent, so splitting a matmul at a run's edge changes no bits.
std::vector<RowRun> PathRuns(const TokenBatch& batch) {
  const cpu::CpuKernelPair pair = cpu::ActiveCpuKernelPair();
  auto path = [&](int i) { return batch.role(i) == TokenRole::kPrompt ? pair.prompt : pair.generated; };
  std::vector<RowRun> runs;
  for (int i = 0, n = batch.size(); i < n;) {
    int j = i + 1;
    while (j < n && path(j) == path(i)) ++j;
    runs.push_back({i, j - i, path(i)});
    i = j;
  }
  return runs;
}

// Scratch of one forward call, per calling thread (a Model may be used from several threads; its pool
// from one at a time): grow-only and never zero-filled, since every buffer is fully written before it is
// read. Reused by every layer and call, so a prefill does not map, fault and zero fresh pages per layer.
struct Workspace {
  cpu::AlignedBuffer<float> h, q, k, v, att, gate, up, normed, sub;
};

Workspace& ThreadWorkspace() {
  thread_local Workspace ws;
  return ws;
}

}  // namespace

Model::Model(std::shared_ptr<const ModelWeights> weights, int max_positions, ThreadPool* pool)
    : weights_(std::move(weights)), rope_(weights_->config.rope(), max_positions), pool_(pool) {}

absl::Status Model::Embed(absl::Span<const int> ids, float* x) const {
  if (!weights_->embed) return absl::FailedPreconditionError("this model shard has no embedding");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size())
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", ids[i], " is outside the vocabulary [0, ", vocab_size(), ")"));
  }
  cpu::Embedding(ids.data(), static_cast<int64_t>(ids.size()), *weights_->embed, x);
  return absl::OkStatus();
}

absl::Status Model::Forward(int a, int b, const TokenBatch& batch, float* x, KvCache* cache) const {
  std::map<int, int> next;
  LS_RETURN_IF_ERROR(CheckTokenBatch(batch, a, b, num_layers(), weights_->first_layer, weights_->end_layer,
                                     max_positions(), *cache, &next));
  for (int l = a; l < b; ++l) Layer(l, batch, x, cache);
  for (const auto& [slot, len] : next)
    for (int l = a; l < b; ++l) cache->set_length(l, slot, len);
  return absl::OkStatus();
}

// One decoder layer on x[n, D]:
//   x += o_proj(attention(rope(q_proj(norm(x))), rope(k_proj(norm(x))), v_proj(norm(x))))
//   x += down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
void Model::Layer(int l, const TokenBatch& batch, float* x, KvCache* cache) const {
  const LlamaConfig& c = config();
  const LayerWeights& w = weights_->layer(l);
  const int n = batch.size(), D = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads;
  const int hd = c.head_dim, F = c.intermediate_size;
  const int64_t rows = n;
  Workspace& ws = ThreadWorkspace();
  float* h = ws.h.Get(rows * D);
  float* q = ws.q.Get(rows * H * hd);
  float* k = ws.k.Get(rows * KV * hd);
  float* v = ws.v.Get(rows * KV * hd);
  float* att = ws.att.Get(rows * H * hd);
  float* gate = ws.gate.Get(rows * F);
  float* up = ws.up.Get(rows * F);
  const int64_t xs = rows * D;

  const std::vector<RowRun> runs = PathRuns(batch);
  auto at = [](float* m, const RowRun& r, int width) { return m + static_cast<size_t>(r.begin) * width; };

  cpu::RmsNorm(x, w.attn_norm.data(), h, n, D, c.rms_norm_eps);
  // q: [n, H*hd], k and v: [n, KV*hd], in one parallel loop per run of rows.
  for (const RowRun& r : runs)
    cpu::MatmulMany(at(h, r, D), r.count,
                    {{w.wq.get(), at(q, r, H * hd)}, {w.wk.get(), at(k, r, KV * hd)}, {w.wv.get(), at(v, r, KV * hd)}},
                    pool_, r.path);
  for (int i = 0; i < n; ++i) {
    cpu::ApplyRope(q + static_cast<size_t>(i) * H * hd, H, hd, rope_, batch.positions[i]);
    cpu::ApplyRope(k + static_cast<size_t>(i) * KV * hd, KV, hd, rope_, batch.positions[i]);
    std::memcpy(cache->k(l, batch.slots[i], batch.positions[i]), k + static_cast<size_t>(i) * KV * hd,
                sizeof(float) * KV * hd);
    std::memcpy(cache->v(l, batch.slots[i], batch.positions[i]), v + static_cast<size_t>(i) * KV * hd,
                sizeof(float) * KV * hd);
  }
  cpu::Attention(q, n, batch.slots.data(), batch.positions.data(), H, cache->LayerView(l), att, pool_);
  for (const RowRun& r : runs) cpu::Matmul(at(att, r, H * hd), r.count, *w.wo, at(h, r, D), pool_, r.path);  // h: [n, D]
  for (int64_t i = 0; i < xs; ++i) x[i] += h[i];

  cpu::RmsNorm(x, w.mlp_norm.data(), h, n, D, c.rms_norm_eps);
  // gate = silu(gate_proj(h)) * up_proj(h): [n, F], in one parallel loop per run (up: scratch).
  for (const RowRun& r : runs)
    cpu::MatmulSwiGlu(at(h, r, D), r.count, *w.w_gate, *w.w_up, at(gate, r, F), at(up, r, F), pool_, r.path);
  for (const RowRun& r : runs) cpu::Matmul(at(gate, r, F), r.count, *w.w_down, at(h, r, D), pool_, r.path);  // [n, D]
  for (int64_t i = 0; i < xs; ++i) x[i] += h[i];
}

absl::Status Model::ExitHead(const float* h, int n, float* logits) const {
  if (!weights_->lm_head || weights_->final_norm.empty())
    return absl::FailedPreconditionError("this model shard has no exit head (final norm + LM head)");
  float* normed = ThreadWorkspace().normed.Get(static_cast<int64_t>(n) * hidden_size());
  cpu::RmsNorm(h, weights_->final_norm.data(), normed, n, hidden_size(), config().rms_norm_eps);
  cpu::Matmul(normed, n, *weights_->lm_head, logits, pool_);
  return absl::OkStatus();
}

absl::Status Model::SetDraftVocabulary(std::vector<int> ids) {
  if (ids.empty()) {
    draft_ids_.clear();
    draft_head_.reset();
    return absl::OkStatus();
  }
  if (!weights_->lm_head) return absl::FailedPreconditionError("this model shard has no LM head for a draft vocabulary");
  const Matrix& head = *weights_->lm_head;
  std::vector<char> seen(vocab_size(), 0);
  for (int id : ids) {
    if (id < 0 || id >= vocab_size())
      return absl::InvalidArgumentError(absl::StrCat("draft vocabulary id ", id, " is outside [0, ", vocab_size(), ")"));
    if (seen[id]++) return absl::InvalidArgumentError(absl::StrCat("draft vocabulary id ", id, " is repeated"));
  }
  auto m = std::make_unique<Matrix>(head.type(), static_cast<int64_t>(ids.size()), head.cols());
  const size_t row_bytes = head.bytes() / head.rows();
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(static_cast<char*>(m->data()) + i * row_bytes,
                static_cast<const char*>(head.data()) + static_cast<size_t>(ids[i]) * row_bytes, row_bytes);
  draft_ids_ = std::move(ids);
  draft_head_ = std::move(m);
  return absl::OkStatus();
}

absl::Status Model::DraftHead(const float* h, int n, float* logits) const {
  if (!draft_head_) return ExitHead(h, n, logits);
  if (weights_->final_norm.empty()) return absl::FailedPreconditionError("this model shard has no final norm");
  const int D = hidden_size(), K = static_cast<int>(draft_ids_.size());
  const int64_t V = vocab_size();
  Workspace& ws = ThreadWorkspace();
  float* normed = ws.normed.Get(static_cast<int64_t>(n) * D);
  float* sub = ws.sub.Get(static_cast<int64_t>(n) * K);
  cpu::RmsNorm(h, weights_->final_norm.data(), normed, n, D, config().rms_norm_eps);
  cpu::Matmul(normed, n, *draft_head_, sub, pool_);  // sub: [n, K]
  for (int i = 0; i < n; ++i) {
    float* row = logits + static_cast<size_t>(i) * V;
    std::fill(row, row + V, -INFINITY);
    for (int j = 0; j < K; ++j) row[draft_ids_[j]] = sub[static_cast<size_t>(i) * K + j];
  }
  return absl::OkStatus();
}

}  // namespace layerskip
