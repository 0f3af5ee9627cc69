#include "worker/shard.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/decode/speculative_phases.h"
#include "engine/model/checkpoint_limits.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/runtime/loaded_model.h"
#include "engine/util/status.h"
#include "kernels/sampling.h"

namespace layerskip::worker {
namespace {

constexpr int kMaxSlots = 4096;    // the coordinator's --num-slots limit
constexpr int kMaxThreads = 1024;

}  // namespace

ShardSpec ShardSpec::FromRequest(const v1::LoadShardRequest& r) {
  ShardSpec s;
  s.model_path = r.model_path();
  s.first_layer = r.first_layer();
  s.end_layer = r.end_layer();
  s.embedding = r.embedding();
  s.head = r.head();
  s.dtype = r.dtype().empty() ? "bf16" : r.dtype();
  s.int8 = r.weights() == "int8";
  s.num_slots = r.num_slots();
  s.context = r.context();
  s.threads = r.threads();
  return s;
}

bool ShardSpec::SameShard(const ShardSpec& o) const {
  return std::filesystem::weakly_canonical(model_path) == std::filesystem::weakly_canonical(o.model_path) &&
         first_layer == o.first_layer && end_layer == o.end_layer && embedding == o.embedding && head == o.head &&
         dtype == o.dtype && int8 == o.int8 && num_slots == o.num_slots && context == o.context;
}

std::string ShardSpec::ToString() const {
  return absl::StrCat("layers [", first_layer, ",", end_layer, ")", embedding ? " +embedding" : "",
                      head ? " +head" : "", " of ", model_path, " (", dtype, int8 ? " int8 layers" : "", ", ", num_slots, " slots x ", context,
                      ")");
}

absl::StatusOr<std::unique_ptr<Shard>> Shard::Load(const ShardSpec& spec, const DeviceSpec& device,
                                                   double gpu_memory_fraction) {
  LoadOptions o;
  if (spec.dtype == "bf16") o.type = WeightType::kBF16;
  else if (spec.dtype == "f32") o.type = WeightType::kF32;
  else return absl::InvalidArgumentError(absl::StrCat("dtype '", spec.dtype, "' is not bf16 or f32"));
  o.int8_layers = spec.int8;
  if (spec.num_slots < 1 || spec.num_slots > kMaxSlots || spec.context < 2)
    return absl::InvalidArgumentError(absl::StrCat("num_slots must be in [1, ", kMaxSlots, "] and context >= 2"));
  if (spec.threads < 0 || spec.threads > kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat("threads must be in [0, ", kMaxThreads, "]"));
  LS_RETURN_IF_ERROR(CheckDevice(device));  // before reading any weights
  o.first_layer = spec.first_layer;
  o.end_layer = spec.end_layer;
  o.embedding = spec.embedding;
  o.head = spec.head;
  LS_ASSIGN_OR_RETURN(ModelWeights w, LoadModelWeights(spec.model_path, o));
  ChooseCpuKernelsFor(w);  // before any matmul (a CUDA shard computes nothing on the CPU; harmless)
  if (spec.first_layer < 0 || spec.end_layer > w.config.num_hidden_layers || spec.first_layer >= spec.end_layer)
    return absl::InvalidArgumentError(absl::StrCat("layer range [", spec.first_layer, ",", spec.end_layer,
                                                   ") is not inside the model's ", w.config.num_hidden_layers, " layers"));
  // The KV cache (K and V, f32) is sized before it is allocated (host memory for the CPU backend; the CUDA
  // backend's allocation fails cleanly when the device is short).
  const int context = std::min(spec.context, w.config.max_position_embeddings);
  const int64_t kv_bytes = int64_t{2} * (spec.end_layer - spec.first_layer) * spec.num_slots * context * w.config.kv_dim() * 4;
  if (device.is_cpu())
    LS_RETURN_IF_ERROR(CheckFitsInMemory(kv_bytes, AvailableMemoryBytes(),
                                         absl::StrCat("the KV cache of ", spec.num_slots, " slots x ", context, " positions")));
  std::unique_ptr<Shard> s(new Shard());
  s->spec_ = spec;
  s->fingerprint_ = ConfigFingerprint(spec.model_path);
  s->weight_bytes_ = static_cast<int64_t>(w.bytes());
  BackendOptions bo;
  bo.device = device;
  bo.num_slots = spec.num_slots;
  bo.capacity = context;
  bo.threads = spec.threads;
  bo.gpu_memory_fraction = gpu_memory_fraction;
  bo.exact_slots = true;  // the coordinator addresses every slot it asked for
  LS_ASSIGN_OR_RETURN(s->backend_, CreateBackend(std::make_shared<const ModelWeights>(std::move(w)), bo));
  s->unsettled_from_.assign(spec.num_slots, -1);
  return s;
}

void Shard::FillInfo(v1::ShardInfo* info) const {
  info->set_model_path(spec_.model_path);
  info->set_first_layer(spec_.first_layer);
  info->set_end_layer(spec_.end_layer);
  info->set_embedding(spec_.embedding);
  info->set_head(spec_.head);
  info->set_num_layers(config().num_hidden_layers);
  info->set_hidden_size(config().hidden_size);
  info->set_vocab_size(config().vocab_size);
  info->set_config_fingerprint(fingerprint_);
  info->set_context(backend_->capacity());
  info->set_num_slots(backend_->num_slots());
  info->set_weight_bytes(weight_bytes_);
}

absl::Status Shard::CheckSlot(int slot, int cached, int a, int b) const {
  if (slot < 0 || slot >= backend_->num_slots())
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " outside [0, ", backend_->num_slots(), ")"));
  for (int l : {a, b - 1}) {
    if (backend_->length(l, slot) != cached)
      return absl::FailedPreconditionError(absl::StrCat("slot ", slot, ": layer ", l, " holds ", backend_->length(l, slot),
                                                        " positions, the coordinator says ", cached,
                                                        " (missed rollback or restarted worker)"));
  }
  return absl::OkStatus();
}

absl::Status Shard::Settle(int slot, int cached, int a, int b) {
  if (slot >= 0 && slot < backend_->num_slots() && unsettled_from_[slot] >= 0) {
    const int start = unsettled_from_[slot], end = backend_->length(a, slot);
    if (cached < start || cached > end)
      return absl::FailedPreconditionError(absl::StrCat("slot ", slot, ": the coordinator's accepted length ", cached,
                                                        " is outside the unsettled positions [", start, ", ", end, "]"));
    backend_->Truncate(slot, cached);
    unsettled_from_[slot] = -1;
  }
  return CheckSlot(slot, cached, a, b);
}

absl::Status Shard::Draft(const v1::DraftRequest& req, v1::DraftResponse* resp, std::vector<float>* rows) {
  const int E = req.exit_layer(), V = config().vocab_size;
  if (!is_first() || !spec_.embedding || !spec_.head || E != spec_.end_layer)
    return absl::FailedPreconditionError(absl::StrCat("Draft needs the first stage ending at the exit layer ", E,
                                                      "; this worker holds ", spec_.ToString()));
  SpeculationConfig cfg;
  cfg.adaptive = req.adaptive();
  cfg.confidence_threshold = req.confidence_threshold();
  std::vector<DraftState> drafts(req.seqs_size());
  std::vector<int> used(req.seqs_size(), 0);
  bool short_of_uniforms = false;
  for (int j = 0; j < req.seqs_size(); ++j) {
    const v1::DraftSequence& in = req.seqs(j);
    LS_RETURN_IF_ERROR(Settle(in.slot(), in.cached(), 0, E));
    if (in.pending().empty()) return absl::InvalidArgumentError(absl::StrCat("slot ", in.slot(), ": no pending tokens"));
    if (in.cached() + in.pending_size() + in.max_drafts() > backend_->capacity())
      return absl::OutOfRangeError(absl::StrCat("slot ", in.slot(), ": the step does not fit the context"));
    DraftState& d = drafts[j];
    d.slot = in.slot();
    d.prompt_tokens = in.prompt_tokens();
    d.max_drafts = in.max_drafts();
    d.sampling.temperature = in.sampling().temperature();
    d.sampling.top_k = in.sampling().top_k();
    d.sampling.top_p = in.sampling().top_p() > 0.0f ? in.sampling().top_p() : 1.0f;
    d.eos_ids.assign(in.eos_ids().begin(), in.eos_ids().end());
    d.input.assign(in.pending().begin(), in.pending().end());
    d.uniform = [&in, &used, &short_of_uniforms, j] {
      if (used[j] >= in.uniforms_size()) {
        short_of_uniforms = true;
        return 0.5;
      }
      return in.uniforms(used[j]++);
    };
  }
  for (const v1::DraftSequence& in : req.seqs()) unsettled_from_[in.slot()] = in.cached();
  std::unique_ptr<Activations> x;
  LS_RETURN_IF_ERROR(DraftAll(*backend_, drafts, E, cfg, &x));
  if (short_of_uniforms) return absl::InvalidArgumentError("sampling draft: the coordinator sent too few uniforms");
  rows->resize(static_cast<size_t>(x->rows()) * hidden());
  LS_RETURN_IF_ERROR(backend_->Download(*x, rows->data()));
  for (int j = 0; j < req.seqs_size(); ++j) {
    const DraftState& d = drafts[j];
    v1::DraftResult* r = resp->add_results();
    r->mutable_drafts()->Add(d.tokens.begin(), d.tokens.end());
    r->set_rows(d.rows);
    r->set_uniforms_used(used[j]);
    for (const auto& q : d.q) r->mutable_q()->Add(q.begin(), q.begin() + V);
  }
  return absl::OkStatus();
}

absl::Status Shard::EarlyExit(const v1::DraftRequest& req, v1::DraftResponse* resp) {
  const int e = req.early_exit_layer(), V = config().vocab_size;
  if (!is_first() || !spec_.embedding || !spec_.head || e < 1 || e > spec_.end_layer)
    return absl::FailedPreconditionError(absl::StrCat("early exit at layer ", e, " needs the first stage to hold it; "
                                                      "this worker holds ", spec_.ToString()));
  TokenBatch batch;
  std::vector<int> ids, greedy_rows, sampling_rows;
  for (const v1::DraftSequence& in : req.seqs()) {
    LS_RETURN_IF_ERROR(Settle(in.slot(), in.cached(), 0, e));
    if (in.pending().empty()) return absl::InvalidArgumentError("no pending tokens");
    for (int i = 0; i < in.pending_size(); ++i) {
      batch.AddToken(in.slot(), in.cached() + i, in.prompt_tokens());
      ids.push_back(in.pending(i));
    }
    (in.sampling().temperature() > 0.0f ? sampling_rows : greedy_rows).push_back(batch.size() - 1);
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> x, backend_->NewActivations(batch.size()));
  LS_RETURN_IF_ERROR(backend_->Embed(ids, *x));
  LS_RETURN_IF_ERROR(backend_->Forward(0, e, batch, *x));
  std::vector<int> tokens(greedy_rows.size());
  if (!greedy_rows.empty()) LS_RETURN_IF_ERROR(backend_->ExitArgmax(*x, greedy_rows, tokens.data()));
  std::vector<float> logits(sampling_rows.size() * static_cast<size_t>(V));
  if (!sampling_rows.empty()) LS_RETURN_IF_ERROR(backend_->ExitHead(*x, sampling_rows, logits.data()));
  size_t g = 0, l = 0;
  for (const v1::DraftSequence& in : req.seqs()) {
    v1::DraftResult* r = resp->add_results();
    if (in.sampling().temperature() > 0.0f) {
      r->mutable_logits()->Add(logits.data() + l * V, logits.data() + (l + 1) * V);
      ++l;
    } else {
      r->set_token(tokens[g++]);
    }
  }
  return absl::OkStatus();
}

absl::Status Shard::Verify(const v1::VerifyRequest& req, std::vector<float>& x, v1::VerifyResponse* resp) {
  const int D = hidden();
  if (is_first())
    return absl::FailedPreconditionError(absl::StrCat("Verify goes to the later stages; this worker holds ", spec_.ToString()));
  std::vector<VerifySpan> spans;
  for (const v1::VerifySequence& s : req.seqs()) {
    LS_RETURN_IF_ERROR(Settle(s.slot(), s.cached(), spec_.first_layer, spec_.end_layer));
    spans.push_back({s.slot(), s.cached(), s.rows(), s.drafts_size(), s.prompt_tokens()});
  }
  LS_ASSIGN_OR_RETURN(VerifyLayout layout, LayoutVerification(spans));
  if (x.size() != static_cast<size_t>(layout.batch.size()) * D)
    return absl::InvalidArgumentError(
        absl::StrCat("received ", x.size() / std::max(D, 1), " rows, the step has ", layout.batch.size()));
  for (const v1::VerifySequence& s : req.seqs()) unsettled_from_[s.slot()] = s.cached();
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> h, backend_->NewActivations(layout.batch.size()));
  LS_RETURN_IF_ERROR(backend_->Upload(x.data(), *h));
  LS_RETURN_IF_ERROR(backend_->Forward(spec_.first_layer, spec_.end_layer, layout.batch, *h));
  if (!is_last()) return backend_->Download(*h, x.data());  // on to the next stage
  std::vector<bool> targets(spans.size(), true), logits;
  for (const v1::VerifySequence& s : req.seqs()) logits.push_back(s.want_logits());
  LS_ASSIGN_OR_RETURN(VerifierHeads heads, RunVerifierHeads(*backend_, *h, layout, targets, logits));
  for (int j = 0; j < req.seqs_size(); ++j) {
    const v1::VerifySequence& s = req.seqs(j);
    v1::VerifyResult* r = resp->add_results();
    r->set_accepted(CountAgreeing(std::vector<int>(s.drafts().begin(), s.drafts().end()), heads.targets[j]));
    r->mutable_targets()->Add(heads.targets[j].begin(), heads.targets[j].end());
    if (s.want_logits()) r->mutable_logits()->Add(heads.logits[j].begin(), heads.logits[j].end());
  }
  return absl::OkStatus();
}

absl::Status Shard::Truncate(int slot, int length) {
  if (slot < 0 || slot >= backend_->num_slots())
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " outside [0, ", backend_->num_slots(), ")"));
  backend_->Truncate(slot, std::max(0, length));
  unsettled_from_[slot] = -1;
  return absl::OkStatus();
}

void Shard::Reset(int slot) {
  if (slot < 0 || slot >= backend_->num_slots()) return;
  backend_->Reset(slot);
  unsettled_from_[slot] = -1;
}

}  // namespace layerskip::worker
