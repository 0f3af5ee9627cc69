#include "coordinator/pipeline/pipeline_executor.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/decode/speculative_phases.h"
#include "engine/decode/step.h"
#include "engine/util/status.h"
#include "worker/shard.h"

namespace layerskip::pipeline {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& where) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(where, ": ", s.error_message()));
}

double Now() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

// Waits for every call (cancelling the rest after the first failure); returns the first failure.
template <class Calls>
absl::Status WaitAll(Calls& calls, const char* what) {
  absl::Status first;
  for (auto& c : calls) {
    const grpc::Status s = c->Wait();
    if (!s.ok() && first.ok()) {
      first = FromGrpc(s, absl::StrCat(what, " on ", c->stage->Name()));
      for (auto& other : calls) other->Cancel();
    }
  }
  return first;
}

}  // namespace

std::vector<std::string> ParseWorkerList(const std::string& flag) {
  std::vector<std::string> out;
  for (absl::string_view w : absl::StrSplit(flag, ',', absl::SkipWhitespace())) out.emplace_back(w);
  return out;
}

absl::StatusOr<std::unique_ptr<PipelineExecutor>> PipelineExecutor::Create(const PipelineOptions& options) {
  std::unique_ptr<PipelineExecutor> p(new PipelineExecutor(options));
  LS_ASSIGN_OR_RETURN(p->config_, LoadLlamaConfig(options.model_path));
  p->fingerprint_ = worker::ConfigFingerprint(options.model_path);
  p->context_ = std::max(2, std::min(options.max_context, p->config_.max_position_embeddings));
  if (options.transport != "tcp" && options.transport != "nccl")
    return absl::InvalidArgumentError(absl::StrCat("transport '", options.transport, "' is not tcp or nccl"));
  if (options.num_slots < 1) return absl::InvalidArgumentError("num_slots must be >= 1");
  const int L = p->config_.num_hidden_layers;
  if (!options.stages.empty() && options.stages != "auto") {
    LS_ASSIGN_OR_RETURN(p->plan_, ParseStagePlan(options.stages, L));
  } else {
    LS_ASSIGN_OR_RETURN(p->plan_, AutoStagePlan(p->config_, static_cast<int>(options.workers.size()),
                                                options.exit_layer > 0 ? options.exit_layer : std::max(1, L / 2)));
  }
  if (p->plan_.size() != options.workers.size())
    return absl::InvalidArgumentError(absl::StrCat("the stage plan ", StagePlanString(p->plan_), " has ", p->plan_.size(),
                                                   " stages but ", options.workers.size(), " workers were given"));
  std::lock_guard<std::mutex> lock(p->mu_);
  for (size_t i = 0; i < options.workers.size(); ++i) {
    auto s = std::make_unique<StageClient>();
    s->index = static_cast<int>(i);
    s->endpoint = options.workers[i];
    s->range = p->plan_[i];
    LS_RETURN_IF_ERROR(p->Connect(*s));
    p->stages_.push_back(std::move(s));
  }
  // Reach every worker first, so that all unreachable ones are named at once.
  std::vector<std::string> unreachable;
  for (auto& s : p->stages_) {
    auto ctx = MakeContext(options.token, options.connect_timeout, /*wait_for_ready=*/true);
    v1::HealthResponse h;
    const grpc::Status st = s->stub->Health(ctx.get(), v1::HealthRequest(), &h);
    if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      return absl::UnauthenticatedError(absl::StrCat(s->Name(), " refused the cluster token: ", st.error_message()));
    if (!st.ok()) unreachable.push_back(absl::StrCat(s->Name(), ": ", st.error_message()));
  }
  if (!unreachable.empty())
    return absl::UnavailableError(absl::StrCat("workers unreachable at start: ", absl::StrJoin(unreachable, "; ")));
  for (auto& s : p->stages_) LS_RETURN_IF_ERROR(p->LoadStage(*s));
  LS_RETURN_IF_ERROR(p->Wire());
  return p;
}

absl::Status PipelineExecutor::Connect(StageClient& s) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca_file.empty()) {
    std::ifstream in(options_.tls_ca_file);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read the TLS CA file ", options_.tls_ca_file));
    std::stringstream ss;
    ss << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ss.str();
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // Notice a restarted worker quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  s.channel = grpc::CreateCustomChannel(s.endpoint, creds, args);
  s.stub = v1::Worker::NewStub(s.channel);
  return absl::OkStatus();
}

absl::Status PipelineExecutor::LoadStage(StageClient& s) {
  v1::LoadShardRequest req;
  req.set_model_path(options_.model_path);
  req.set_first_layer(s.range.first_layer);
  req.set_end_layer(s.range.end_layer);
  req.set_embedding(s.range.embedding);
  req.set_head(s.range.head);
  req.set_dtype(options_.dtype);
  req.set_num_slots(options_.num_slots);
  req.set_context(context_);
  req.set_stage(s.index);
  req.set_num_stages(static_cast<int>(stages_.size()));
  req.set_threads(options_.threads);
  auto ctx = MakeContext(options_.token, absl::Minutes(10));
  v1::ShardInfo info;
  const grpc::Status st = s.stub->LoadShard(ctx.get(), req, &info);
  if (!st.ok()) {
    s.up = false;
    return FromGrpc(st, absl::StrCat("loading ", s.Name()));
  }
  if (info.config_fingerprint() != fingerprint_ || info.num_layers() != config_.num_hidden_layers ||
      info.hidden_size() != config_.hidden_size || info.vocab_size() != config_.vocab_size)
    return absl::FailedPreconditionError(absl::StrCat(s.Name(), " serves a different model than ", options_.model_path,
                                                      " (", info.num_layers(), " layers, hidden ", info.hidden_size(),
                                                      ", vocab ", info.vocab_size(), ")"));
  s.data_endpoint = info.data_endpoint();
  auto hctx = MakeContext(options_.token, options_.connect_timeout);
  v1::HealthResponse h;
  if (grpc::Status hs = s.stub->Health(hctx.get(), v1::HealthRequest(), &h); !hs.ok())
    return FromGrpc(hs, absl::StrCat("health of ", s.Name()));
  s.pid = h.pid();
  s.up = true;
  return absl::OkStatus();
}

absl::Status PipelineExecutor::Wire() {
  const int n = static_cast<int>(stages_.size());
  std::string nccl_id;
  if (options_.transport == "nccl") {  // rank 0 creates the id; every rank gets it in Connect
    auto ctx = MakeContext(options_.token, options_.connect_timeout);
    v1::NcclIdResponse id;
    if (grpc::Status st = stages_[0]->stub->GetNcclId(ctx.get(), v1::NcclIdRequest(), &id); !st.ok())
      return FromGrpc(st, absl::StrCat("NCCL id from ", stages_[0]->Name()));
    nccl_id = id.nccl_unique_id();
  }
  // In parallel: ncclCommInitRank is collective.
  std::vector<std::unique_ptr<PendingCall<v1::ConnectRequest, v1::ConnectResponse>>> calls;
  for (int i = 0; i < n; ++i) {
    v1::ConnectRequest req;
    req.set_transport(options_.transport);
    if (i + 1 < n) req.set_next_endpoint(stages_[i + 1]->data_endpoint);
    req.set_nccl_unique_id(nccl_id);
    req.set_rank(i);
    req.set_num_ranks(n);
    req.set_device(-1);
    calls.push_back(Launch(stages_[i].get(), options_.token, absl::Seconds(60), &v1::Worker::Stub::Connect, req));
  }
  return WaitAll(calls, "wiring the transport");
}

void PipelineExecutor::ProbeLocked() {
  for (auto& s : stages_) {
    if (!s->up) continue;
    auto ctx = MakeContext(options_.token, absl::Milliseconds(500));
    v1::HealthResponse h;
    const grpc::Status st = s->stub->Health(ctx.get(), v1::HealthRequest(), &h);
    if (!st.ok() || !h.loaded() || h.pid() != s->pid) s->up = false;
  }
}

absl::Status PipelineExecutor::FailLocked(const absl::Status& cause) {
  ProbeLocked();
  std::vector<std::string> down;
  for (auto& s : stages_)
    if (!s->up) down.push_back(s->Name());
  if (down.empty()) return cause;
  return absl::UnavailableError(absl::StrCat("pipeline ", absl::StrJoin(down, ", "), " down: ", cause.message()));
}

absl::Status PipelineExecutor::RestoreLocked() {
  std::vector<std::string> down;
  for (auto& s : stages_) {
    if (s->up) continue;
    // A reachable worker gets its shard (again); a fresh process re-registers this way.
    auto ctx = MakeContext(options_.token, absl::Milliseconds(500));
    v1::HealthResponse h;
    const grpc::Status st = s->stub->Health(ctx.get(), v1::HealthRequest(), &h);
    absl::Status loaded = st.ok() ? LoadStage(*s) : FromGrpc(st, "unreachable");
    if (!loaded.ok()) down.push_back(absl::StrCat(s->Name(), ": ", loaded.message()));
  }
  if (!down.empty()) return absl::UnavailableError(absl::StrCat("pipeline not serving: ", absl::StrJoin(down, "; ")));
  absl::Status wired = Wire();
  if (!wired.ok()) {
    ProbeLocked();
    return absl::UnavailableError(absl::StrCat("pipeline not serving: ", wired.message()));
  }
  if (!dirty_slots_.empty()) {  // slots released while a stage was away
    v1::ReleaseRequest rel;
    for (int slot : dirty_slots_) rel.add_slots(slot);
    for (auto& s : stages_) {
      auto ctx = MakeContext(options_.token, options_.connect_timeout);
      v1::ReleaseResponse r;
      if (grpc::Status rs = s->stub->Release(ctx.get(), rel, &r); !rs.ok())
        return absl::UnavailableError(absl::StrCat("pipeline not serving: release on ", s->Name(), ": ", rs.error_message()));
    }
    dirty_slots_.clear();
  }
  return absl::OkStatus();
}

absl::Status PipelineExecutor::Health() {
  std::lock_guard<std::mutex> lock(mu_);
  ProbeLocked();
  bool all_up = true;
  for (auto& s : stages_) all_up &= s->up;
  if (all_up) return absl::OkStatus();
  return RestoreLocked();
}

std::vector<StageStats> PipelineExecutor::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<StageStats> out;
  for (auto& s : stages_) {
    StageStats st;
    st.name = s->Name();
    auto ctx = MakeContext(options_.token, options_.connect_timeout);
    v1::StatsResponse r;
    if (s->stub->Stats(ctx.get(), v1::StatsRequest(), &r).ok()) {
      st.uptime_seconds = r.uptime_seconds();
      st.busy_seconds = r.busy_seconds();
      st.transport_wait_seconds = r.transport_wait_seconds();
      st.rounds = r.rounds();
      st.rows = r.rows();
      st.bytes_sent = r.bytes_sent();
      st.bytes_received = r.bytes_received();
    }
    out.push_back(st);
  }
  return out;
}

void PipelineExecutor::Release(int slot) {
  std::lock_guard<std::mutex> lock(mu_);
  v1::ReleaseRequest req;
  req.add_slots(slot);
  std::vector<std::unique_ptr<PendingCall<v1::ReleaseRequest, v1::ReleaseResponse>>> calls;
  for (auto& s : stages_) {
    if (!s->up) {
      dirty_slots_.insert(slot);
      continue;
    }
    calls.push_back(Launch(s.get(), options_.token, options_.connect_timeout, &v1::Worker::Stub::Release, req));
  }
  for (auto& c : calls)
    if (!c->Wait().ok()) {
      dirty_slots_.insert(slot);
      c->stage->up = false;
    }
}

absl::Status PipelineExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  std::vector<Sequence*> active;
  for (Sequence* s : seqs)
    if (!s->finished()) active.push_back(s);
  if (active.empty()) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> lock(mu_);
    bool all_up = true;
    for (auto& s : stages_) all_up &= s->up;
    if (!all_up) {
      // Rate-limited: a step against a dead stage fails at once instead of waiting for it.
      if (absl::Now() - last_restore_attempt_ < absl::Milliseconds(200)) {
        std::vector<std::string> down;
        for (auto& s : stages_)
          if (!s->up) down.push_back(s->Name());
        return absl::UnavailableError(absl::StrCat("pipeline ", absl::StrJoin(down, ", "), " down"));
      }
      last_restore_attempt_ = absl::Now();
      LS_RETURN_IF_ERROR(RestoreLocked());
    }
  }
  for (Sequence* s : active)
    if (s->slot() < 0 || s->slot() >= options_.num_slots)
      return absl::InvalidArgumentError(absl::StrCat("slot ", s->slot(), " outside [0, ", options_.num_slots, ")"));
  switch (options.mode) {
    case DecodeMode::kAutoregressive:
    case DecodeMode::kSelfSpeculative:
      return SpeculativeStep(active, options);
    case DecodeMode::kEarlyExit:
      return EarlyExitStep(active, options.exit_layer);
  }
  return absl::InvalidArgumentError("unknown decode mode");
}

absl::Status PipelineExecutor::EarlyExitStep(const std::vector<Sequence*>& active, int exit_layer) {
  if (exit_layer < 1 || exit_layer > this->exit_layer())
    return absl::InvalidArgumentError(absl::StrCat("early exit at layer ", exit_layer, ": the pipeline's draft stage holds "
                                                   "layers [0, ", this->exit_layer(), ")"));
  std::lock_guard<std::mutex> lock(mu_);
  v1::DraftRequest req;
  req.set_round(next_round_++);
  req.set_early_exit_layer(exit_layer);
  for (Sequence* s : active) {
    v1::DraftSequence* d = req.add_seqs();
    d->set_slot(s->slot());
    d->set_cached(s->cached());
    d->mutable_pending()->Add(s->pending().begin(), s->pending().end());
    d->mutable_sampling()->set_temperature(s->params().sampling.temperature);
  }
  auto call = Launch(stages_[0].get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Draft, req);
  if (grpc::Status st = call->Wait(); !st.ok()) return FailLocked(FromGrpc(st, absl::StrCat("early exit on ", stages_[0]->Name())));
  if (call->response.results_size() != static_cast<int>(active.size())) return absl::InternalError("early exit: wrong result count");
  const int V = config_.vocab_size;
  for (size_t j = 0; j < active.size(); ++j) {
    Sequence& s = *active[j];
    const v1::DraftResult& r = call->response.results(static_cast<int>(j));
    s.MarkPendingCached();
    if (s.params().sampling.greedy()) {
      s.Append(r.token(), context_);
    } else {
      if (r.logits_size() != V) return absl::InternalError("early exit: logits row has the wrong size");
      s.Append(ChooseToken(r.logits().data(), V, s), context_);
    }
  }
  return absl::OkStatus();
}

absl::Status PipelineExecutor::SpeculativeStep(const std::vector<Sequence*>& active, const DecodeOptions& options) {
  SpeculationConfig cfg = options.speculation;
  cfg.exit_layer = exit_layer();
  if (options.mode == DecodeMode::kAutoregressive) {  // a round without drafts is one autoregressive step
    cfg.speculations = 0;
    cfg.adaptive = false;
  } else if (options.exit_layer != exit_layer()) {
    return absl::InvalidArgumentError(absl::StrCat("exit layer ", options.exit_layer, ": this pipeline drafts with layers [0, ",
                                                   exit_layer(), ") on stage 0, so requests must use exit layer ", exit_layer()));
  }
  LS_RETURN_IF_ERROR(ValidateSpeculation(cfg, config_.num_hidden_layers));
  const int V = config_.vocab_size;
  std::lock_guard<std::mutex> lock(mu_);

  // Micro-batches: contiguous, as even as possible.
  const int M = std::clamp(options_.micro_batches, 1, static_cast<int>(active.size()));
  std::vector<std::vector<Sequence*>> mbs(M);
  for (size_t i = 0; i < active.size(); ++i) mbs[i * M / active.size()].push_back(active[i]);

  using DraftCall = PendingCall<v1::DraftRequest, v1::DraftResponse>;
  using VerifyCall = PendingCall<v1::VerifyRequest, v1::VerifyResponse>;
  using AcceptCall = PendingCall<v1::AcceptRequest, v1::AcceptResponse>;
  auto draft_request = [&](const std::vector<Sequence*>& mb) {
    v1::DraftRequest req;
    req.set_round(next_round_++);
    req.set_exit_layer(cfg.exit_layer);
    req.set_adaptive(cfg.adaptive);
    req.set_confidence_threshold(cfg.confidence_threshold);
    for (Sequence* s : mb) {
      v1::DraftSequence* d = req.add_seqs();
      d->set_slot(s->slot());
      d->set_cached(s->cached());
      d->mutable_pending()->Add(s->pending().begin(), s->pending().end());
      d->set_max_drafts(MaxDrafts(*s, cfg, context_));
      d->mutable_eos_ids()->Add(s->params().eos_ids.begin(), s->params().eos_ids.end());
      const cpu::SamplingParams& sp = s->params().sampling;
      d->mutable_sampling()->set_temperature(sp.temperature);
      d->mutable_sampling()->set_top_k(sp.top_k);
      d->mutable_sampling()->set_top_p(sp.top_p);
      if (!sp.greedy()) {  // the generator stays here; stage 0 gets the draws it may need
        Rng copy = s->rng();
        for (int i = 0; i < d->max_drafts(); ++i) d->add_uniforms(copy.Uniform());
      }
    }
    return req;
  };

  std::vector<std::unique_ptr<AcceptCall>> accepts;
  std::unique_ptr<DraftCall> next_draft =
      Launch(stages_[0].get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Draft, draft_request(mbs[0]));
  for (int m = 0; m < M; ++m) {
    std::unique_ptr<DraftCall> draft = std::move(next_draft);
    const double t0 = Now();
    if (grpc::Status st = draft->Wait(); !st.ok()) {
      WaitAll(accepts, "accept").IgnoreError();  // the step fails anyway; just let the calls finish
      return FailLocked(FromGrpc(st, absl::StrCat("draft on ", stages_[0]->Name())));
    }
    const double t1 = Now();
    const std::vector<Sequence*>& mb = mbs[m];
    const v1::DraftResponse& drafted = draft->response;
    if (drafted.results_size() != static_cast<int>(mb.size())) return absl::InternalError("draft: wrong result count");
    // Verification on every later stage; the activations travel stage to stage over the transport.
    v1::VerifyRequest vreq;
    vreq.set_round(draft->request.round());
    for (size_t j = 0; j < mb.size(); ++j) {
      const v1::DraftResult& r = drafted.results(static_cast<int>(j));
      v1::VerifySequence* v = vreq.add_seqs();
      v->set_slot(mb[j]->slot());
      v->set_cached(mb[j]->cached());
      v->set_rows(r.rows());
      *v->mutable_drafts() = r.drafts();
      v->set_want_logits(!mb[j]->params().sampling.greedy());
    }
    std::vector<std::unique_ptr<VerifyCall>> verifies;
    for (size_t i = 1; i < stages_.size(); ++i)
      verifies.push_back(Launch(stages_[i].get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Verify, vreq));
    // Pipelining: stage 0 drafts the next micro-batch while the later stages verify this one.
    if (m + 1 < M)
      next_draft = Launch(stages_[0].get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Draft, draft_request(mbs[m + 1]));
    absl::Status verified = WaitAll(verifies, "verify");
    if (!verified.ok()) {
      if (next_draft) {
        next_draft->Cancel();
        next_draft->Wait();
      }
      WaitAll(accepts, "accept").IgnoreError();  // the step fails anyway; just let the calls finish
      return FailLocked(verified);
    }
    const v1::VerifyResponse& verdict = verifies.back()->response;
    if (verdict.results_size() != static_cast<int>(mb.size())) return absl::InternalError("verify: wrong result count");
    // Accept here (stop conditions, generators), then every stage truncates to the new lengths.
    v1::AcceptRequest areq;
    areq.set_round(vreq.round());
    for (size_t j = 0; j < mb.size(); ++j) {
      Sequence& s = *mb[j];
      const v1::DraftResult& r = drafted.results(static_cast<int>(j));
      const v1::VerifyResult& v = verdict.results(static_cast<int>(j));
      const std::vector<int> tokens(r.drafts().begin(), r.drafts().end());
      const int k = static_cast<int>(tokens.size());
      if (!s.params().sampling.greedy()) {
        for (int u = 0; u < r.uniforms_used(); ++u) s.rng().Uniform();
      }
      std::vector<std::vector<float>> q;
      for (int i = 0; i < k && r.q_size() >= (i + 1) * V; ++i) q.emplace_back(r.q().begin() + i * V, r.q().begin() + (i + 1) * V);
      VerifierRows rows;
      if (s.params().sampling.greedy()) {
        rows.targets.assign(v.targets().begin(), v.targets().end());
        if (static_cast<int>(rows.targets.size()) != k + 1) return absl::InternalError("verify: wrong number of targets");
      } else {
        if (v.logits_size() != (k + 1) * V || static_cast<int>(q.size()) != k)
          return absl::InternalError("verify: sampling rows missing");
        rows.logits = v.logits().data();
      }
      s.MarkPendingCached();
      const int accepted = AcceptDrafts(s, tokens, q, rows, V, context_);
      UpdateDraftLimit(s, cfg, k, accepted);
      SpecStats& st = s.stats();
      ++st.rounds;
      st.draft_seconds += t1 - t0;
      st.verify_seconds += Now() - t1;
      areq.add_slots(s.slot());
      areq.add_lengths(s.num_tokens() - 1);  // the last emitted token is pending
    }
    for (auto& s : stages_)
      accepts.push_back(Launch(s.get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Accept, areq));
  }
  absl::Status accepted = WaitAll(accepts, "accept");
  if (!accepted.ok()) return FailLocked(accepted);
  return absl::OkStatus();
}

}  // namespace layerskip::pipeline
