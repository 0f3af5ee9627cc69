#include "worker/shard.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/decode/speculative_phases.h"
#include "engine/model/checkpoint_limits.h"
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

uint64_t ConfigFingerprint(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json", std::ios::binary);
  if (!in) return 0;
  std::stringstream ss;
  ss << in.rdbuf();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : ss.str()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

absl::StatusOr<std::unique_ptr<Shard>> Shard::Load(const ShardSpec& spec) {
  LoadOptions o;
  if (spec.dtype == "bf16") o.type = WeightType::kBF16;
  else if (spec.dtype == "f32") o.type = WeightType::kF32;
  else return absl::InvalidArgumentError(absl::StrCat("dtype '", spec.dtype, "' is not bf16 or f32"));
  o.int8_layers = spec.int8;
  if (spec.num_slots < 1 || spec.num_slots > kMaxSlots || spec.context < 2)
    return absl::InvalidArgumentError(absl::StrCat("num_slots must be in [1, ", kMaxSlots, "] and context >= 2"));
  if (spec.threads < 0 || spec.threads > kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat("threads must be in [0, ", kMaxThreads, "]"));
  o.first_layer = spec.first_layer;
  o.end_layer = spec.end_layer;
  o.embedding = spec.embedding;
  o.head = spec.head;
  LS_ASSIGN_OR_RETURN(ModelWeights w, LoadModelWeights(spec.model_path, o));
  if (spec.first_layer < 0 || spec.end_layer > w.config.num_hidden_layers || spec.first_layer >= spec.end_layer)
    return absl::InvalidArgumentError(absl::StrCat("layer range [", spec.first_layer, ",", spec.end_layer,
                                                   ") is not inside the model's ", w.config.num_hidden_layers, " layers"));
  // The KV cache (K and V, f32) is sized before it is allocated.
  const int context = std::min(spec.context, w.config.max_position_embeddings);
  const int64_t kv_bytes = int64_t{2} * (spec.end_layer - spec.first_layer) * spec.num_slots * context * w.config.kv_dim() * 4;
  LS_RETURN_IF_ERROR(CheckFitsInMemory(kv_bytes, AvailableMemoryBytes(),
                                       absl::StrCat("the KV cache of ", spec.num_slots, " slots x ", context, " positions")));
  std::unique_ptr<Shard> s(new Shard());
  s->spec_ = spec;
  s->fingerprint_ = ConfigFingerprint(spec.model_path);
  s->weights_ = std::make_shared<const ModelWeights>(std::move(w));
  s->pool_ = std::make_unique<ThreadPool>(spec.threads);
  s->model_ = std::make_unique<Model>(s->weights_, context, s->pool_.get());
  s->cache_ = std::make_unique<KvCache>(s->weights_->config, spec.first_layer, spec.end_layer, spec.num_slots, context);
  s->open_start_.assign(spec.num_slots, -1);
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
  info->set_context(cache_->capacity());
  info->set_num_slots(cache_->num_slots());
  info->set_weight_bytes(static_cast<int64_t>(weights_->bytes()));
}

absl::Status Shard::CheckSlot(int slot, int cached, int a, int b) const {
  if (slot < 0 || slot >= cache_->num_slots())
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " outside [0, ", cache_->num_slots(), ")"));
  for (int l : {a, b - 1}) {
    if (cache_->length(l, slot) != cached)
      return absl::FailedPreconditionError(absl::StrCat("slot ", slot, ": layer ", l, " holds ", cache_->length(l, slot),
                                                        " positions, the coordinator says ", cached,
                                                        " (missed rollback or restarted worker)"));
  }
  return absl::OkStatus();
}

absl::Status Shard::Settle(int slot, int cached, int a, int b) {
  if (slot >= 0 && slot < cache_->num_slots() && open_start_[slot] >= 0) {
    const int start = open_start_[slot], end = cache_->length(a, slot);
    if (cached < start || cached > end)
      return absl::FailedPreconditionError(absl::StrCat("slot ", slot, ": the coordinator's accepted length ", cached,
                                                        " is outside the open round's [", start, ", ", end, "]"));
    cache_->Truncate(slot, cached);
    open_start_[slot] = -1;
  }
  return CheckSlot(slot, cached, a, b);
}

absl::Status Shard::Draft(const v1::DraftRequest& req, v1::DraftResponse* resp, std::vector<float>* rows) {
  const int E = req.exit_layer(), D = hidden(), V = config().vocab_size;
  if (!is_first() || !spec_.embedding || !spec_.head || E != spec_.end_layer)
    return absl::FailedPreconditionError(absl::StrCat("Draft needs the first stage ending at the exit layer ", E,
                                                      "; this worker holds ", spec_.ToString()));
  SpeculationConfig cfg;
  cfg.exit_layer = E;
  cfg.adaptive = req.adaptive();
  cfg.confidence_threshold = req.confidence_threshold();
  std::vector<DraftState> drafts(req.seqs_size());
  std::vector<int> used(req.seqs_size(), 0);
  bool short_of_uniforms = false;
  for (int j = 0; j < req.seqs_size(); ++j) {
    const v1::DraftSequence& in = req.seqs(j);
    LS_RETURN_IF_ERROR(Settle(in.slot(), in.cached(), 0, E));
    if (in.pending().empty()) return absl::InvalidArgumentError(absl::StrCat("slot ", in.slot(), ": no pending tokens"));
    if (in.cached() + in.pending_size() + in.max_drafts() > cache_->capacity())
      return absl::OutOfRangeError(absl::StrCat("slot ", in.slot(), ": round does not fit the context"));
    DraftState& d = drafts[j];
    d.slot = in.slot();
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
  for (const v1::DraftSequence& in : req.seqs()) open_start_[in.slot()] = in.cached();
  LS_RETURN_IF_ERROR(DraftAll(*model_, *cache_, drafts, cfg));
  if (short_of_uniforms) return absl::InvalidArgumentError("sampling draft: the coordinator sent too few uniforms");
  rows->clear();
  for (int j = 0; j < req.seqs_size(); ++j) {
    const DraftState& d = drafts[j];
    v1::DraftResult* r = resp->add_results();
    r->mutable_drafts()->Add(d.tokens.begin(), d.tokens.end());
    r->set_rows(d.rows(D));
    r->set_uniforms_used(used[j]);
    for (const auto& q : d.q) r->mutable_q()->Add(q.begin(), q.begin() + V);
    rows->insert(rows->end(), d.exit_rows.begin(), d.exit_rows.end());
  }
  return absl::OkStatus();
}

absl::Status Shard::EarlyExit(const v1::DraftRequest& req, v1::DraftResponse* resp) {
  const int e = req.early_exit_layer(), D = hidden(), V = config().vocab_size;
  if (!is_first() || !spec_.embedding || !spec_.head || e < 1 || e > spec_.end_layer)
    return absl::FailedPreconditionError(absl::StrCat("early exit at layer ", e, " needs the first stage to hold it; "
                                                      "this worker holds ", spec_.ToString()));
  TokenBatch batch;
  std::vector<int> ids, last;
  for (const v1::DraftSequence& in : req.seqs()) {
    LS_RETURN_IF_ERROR(Settle(in.slot(), in.cached(), 0, e));
    if (in.pending().empty()) return absl::InvalidArgumentError("no pending tokens");
    for (int i = 0; i < in.pending_size(); ++i) {
      batch.Add(in.slot(), in.cached() + i);
      ids.push_back(in.pending(i));
    }
    last.push_back(batch.size() - 1);
  }
  std::vector<float> x(ids.size() * D);
  LS_RETURN_IF_ERROR(model_->Embed(ids, x.data()));
  LS_RETURN_IF_ERROR(model_->Forward(0, e, batch, x.data(), cache_.get()));
  std::vector<float> h;
  for (int r : last) h.insert(h.end(), x.begin() + static_cast<size_t>(r) * D, x.begin() + static_cast<size_t>(r + 1) * D);
  std::vector<float> logits(last.size() * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(model_->ExitHead(h.data(), static_cast<int>(last.size()), logits.data()));
  for (int j = 0; j < req.seqs_size(); ++j) {
    v1::DraftResult* r = resp->add_results();
    const float* l = logits.data() + static_cast<size_t>(j) * V;
    if (req.seqs(j).sampling().temperature() > 0.0f) r->mutable_logits()->Add(l, l + V);
    else r->set_token(cpu::Argmax(l, V));
  }
  return absl::OkStatus();
}

absl::Status Shard::Verify(const v1::VerifyRequest& req, std::vector<float>& x, v1::VerifyResponse* resp) {
  const int D = hidden(), V = config().vocab_size;
  if (is_first())
    return absl::FailedPreconditionError(absl::StrCat("Verify goes to the later stages; this worker holds ", spec_.ToString()));
  TokenBatch batch;
  for (const v1::VerifySequence& s : req.seqs()) {
    LS_RETURN_IF_ERROR(Settle(s.slot(), s.cached(), spec_.first_layer, spec_.end_layer));
    if (s.rows() < s.drafts_size() + 1)
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot(), ": ", s.rows(), " rows for ", s.drafts_size(), " drafts"));
    for (int i = 0; i < s.rows(); ++i) batch.Add(s.slot(), s.cached() + i);
  }
  if (x.size() != static_cast<size_t>(batch.size()) * D)
    return absl::InvalidArgumentError(absl::StrCat("received ", x.size() / std::max(D, 1), " rows, the round has ", batch.size()));
  for (const v1::VerifySequence& s : req.seqs()) open_start_[s.slot()] = s.cached();
  LS_RETURN_IF_ERROR(model_->Forward(spec_.first_layer, spec_.end_layer, batch, x.data(), cache_.get()));
  if (!is_last()) return absl::OkStatus();
  // Head rows: the last pending token and each draft, i.e. the last k+1 rows of each sequence.
  std::vector<float> h;
  size_t row = 0;
  for (const v1::VerifySequence& s : req.seqs()) {
    const size_t rows = s.rows(), k = s.drafts_size();
    h.insert(h.end(), x.begin() + (row + rows - k - 1) * D, x.begin() + (row + rows) * D);
    row += rows;
  }
  const int n = static_cast<int>(h.size() / D);
  std::vector<float> logits(static_cast<size_t>(n) * V);
  LS_RETURN_IF_ERROR(model_->ExitHead(h.data(), n, logits.data()));
  size_t head = 0;
  for (const v1::VerifySequence& s : req.seqs()) {
    v1::VerifyResult* r = resp->add_results();
    std::vector<int> targets;
    for (int i = 0; i <= s.drafts_size(); ++i) targets.push_back(cpu::Argmax(logits.data() + (head + i) * V, V));
    r->set_accepted(CountAgreeing(std::vector<int>(s.drafts().begin(), s.drafts().end()), targets));
    r->mutable_targets()->Add(targets.begin(), targets.end());
    if (s.want_logits())
      r->mutable_logits()->Add(logits.data() + head * V, logits.data() + (head + s.drafts_size() + 1) * V);
    head += s.drafts_size() + 1;
  }
  return absl::OkStatus();
}

absl::Status Shard::Truncate(int slot, int length) {
  if (slot < 0 || slot >= cache_->num_slots())
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " outside [0, ", cache_->num_slots(), ")"));
  cache_->Truncate(slot, std::max(0, length));
  open_start_[slot] = -1;
  return absl::OkStatus();
}

void Shard::Reset(int slot) {
  if (slot < 0 || slot >= cache_->num_slots()) return;
  cache_->Reset(slot);
  open_start_[slot] = -1;
}

}  // namespace layerskip::worker
