#include "coordinator/execution/pipeline/pipeline_executor.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/decode/speculative_phases.h"
#include "engine/decode/autoregressive_step.h"
#include "engine/util/status.h"
#include "engine/model/config.h"

namespace layerskip::pipeline {

std::vector<std::string> ParseWorkerList(const std::string& flag) {
  std::vector<std::string> out;
  for (absl::string_view w : absl::StrSplit(flag, ',', absl::SkipWhitespace())) out.emplace_back(w);
  return out;
}

absl::StatusOr<std::unique_ptr<PipelineExecutor>> PipelineExecutor::Create(const PipelineOptions& options) {
  std::unique_ptr<PipelineExecutor> p(new PipelineExecutor(options));
  LS_ASSIGN_OR_RETURN(p->config_, LoadLlamaConfig(options.model_path));
  p->fingerprint_ = ConfigFingerprint(options.model_path);
  p->context_ = std::max(2, std::min(options.max_context, p->config_.max_position_embeddings));
  if (options.transport != "tcp" && options.transport != "nccl" && options.transport != "ipc")
    return absl::InvalidArgumentError(absl::StrCat("transport '", options.transport, "' is not tcp, nccl or ipc"));
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
  std::vector<StageHealth::Target> targets;
  for (size_t i = 0; i < options.workers.size(); ++i) {
    auto s = std::make_unique<StageClient>();
    s->index = static_cast<int>(i);
    s->endpoint = options.workers[i];
    s->range = p->plan_[i];
    LS_RETURN_IF_ERROR(p->Connect(*s));
    targets.push_back({s->Name(), s->stub.get()});
    p->stages_.push_back(std::move(s));
  }
  PipelineExecutor* raw = p.get();
  p->health_ = std::make_unique<StageHealth>(std::move(targets), options.token, options.heartbeat_interval,
                                             options.heartbeat_misses, [raw](int stage) { raw->OnStageSilent(stage); });
  // Every stage starts down; RestoreLocked reaches, loads and wires them (naming every unreachable one).
  p->start_deadline_ = absl::Now() + options.workers_wait;
  if (options.wire_in_background) return p;
  for (;;) {
    absl::Status s = p->TryRestoreLocked();
    if (s.ok()) return p;
    if (absl::IsDeadlineExceeded(s)) return absl::UnavailableError(s.message());  // --workers-wait is over
    if (!absl::IsUnavailable(s)) return s;
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), p->next_restore_attempt_ - absl::Now())));
  }
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
  req.set_weights(options_.weights);
  req.set_num_slots(options_.num_slots);
  req.set_context(context_);
  req.set_stage(s.index);
  req.set_num_stages(static_cast<int>(stages_.size()));
  req.set_threads(options_.threads);
  auto ctx = MakeContext(options_.token, options_.load_timeout);
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
  std::vector<std::string> link_ids(n);  // nccl: link i (stage i -> i+1) gets its id from stage i
  if (options_.transport == "nccl") {
    for (int i = 0; i + 1 < n; ++i) {
      auto ctx = MakeContext(options_.token, options_.connect_timeout);
      v1::NcclIdResponse id;
      if (grpc::Status st = stages_[i]->stub->GetNcclId(ctx.get(), v1::NcclIdRequest(), &id); !st.ok())
        return FromGrpc(st, absl::StrCat("NCCL id from ", stages_[i]->Name()));
      link_ids[i] = id.nccl_unique_id();
    }
  }
  // In parallel: both ends of a NCCL link initialise it together.
  std::vector<std::unique_ptr<PendingCall<v1::ConnectRequest, v1::ConnectResponse>>> calls;
  for (int i = 0; i < n; ++i) {
    v1::ConnectRequest req;
    req.set_transport(options_.transport);
    if (i + 1 < n) req.set_next_endpoint(stages_[i + 1]->data_endpoint);
    req.set_nccl_unique_id(link_ids[i]);
    if (i > 0) req.set_nccl_prev_id(link_ids[i - 1]);
    req.set_rank(i);
    req.set_num_ranks(n);
    req.set_device(-1);
    req.set_stage(i);
    calls.push_back(Launch(stages_[i].get(), options_.token, options_.rpc_timeout, &v1::Worker::Stub::Connect, req));
  }
  return WaitAll(calls, "wiring the transport");
}

void PipelineExecutor::ProbeLocked() {
  for (auto& s : stages_) {
    if (!s->up) continue;
    auto ctx = MakeContext(options_.token, options_.heartbeat_interval);
    v1::HealthResponse h;
    const grpc::Status st = s->stub->Health(ctx.get(), v1::HealthRequest(), &h);
    if (!st.ok() || !h.loaded() || h.pid() != s->pid || health_->silent(s->index)) s->up = false;
  }
}

absl::Status PipelineExecutor::FailLocked(const absl::Status& cause) {
  if (absl::Status live = health_->Liveness(); !live.ok()) {  // silent stages: their calls were cancelled
    for (auto& s : stages_) s->up = s->up && !health_->silent(s->index);
    return absl::UnavailableError(absl::StrCat(live.message(), "; step: ", cause.message()));
  }
  ProbeLocked();
  std::vector<std::string> down;
  for (auto& s : stages_)
    if (!s->up) down.push_back(s->Name());
  if (!down.empty())
    return absl::UnavailableError(absl::StrCat("pipeline ", absl::StrJoin(down, ", "), " down: ", cause.message()));
  if (IsDataPlaneFailure(cause)) {
    rewire_ = true;
    // Every stage answers, but a link broke, a frame was refused or the step overran its deadline.
    return absl::UnavailableError(absl::StrCat("pipeline data plane failed or the step overran its deadline "
                                               "(links re-wired before the next step): ", cause.message()));
  }
  return cause;
}

bool IsDataPlaneFailure(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:        // a link broke or was refused; a stage could not send
    case absl::StatusCode::kCancelled:          // the round was given up after another one failed
    case absl::StatusCode::kDeadlineExceeded:   // activations or a reply never came
    case absl::StatusCode::kDataLoss:           // a frame of the wrong shape
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

absl::Status PipelineExecutor::RestoreLocked() {
  // At start a refused token or another model is final; an unreachable worker is waited for.
  const bool starting = !wired_;
  std::vector<std::string> down;
  for (auto& s : stages_) {
    if (s->up) continue;
    // A reachable worker gets its shard (again); a fresh process re-registers this way.
    auto ctx = MakeContext(options_.token, starting ? options_.connect_timeout : options_.heartbeat_interval);
    v1::HealthResponse h;
    const grpc::Status st = s->stub->Health(ctx.get(), v1::HealthRequest(), &h);
    if (starting && st.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      return absl::UnauthenticatedError(absl::StrCat(s->Name(), " refused the cluster token: ", st.error_message()));
    absl::Status loaded = st.ok() ? LoadStage(*s) : FromGrpc(st, "unreachable");
    if (starting && absl::IsFailedPrecondition(loaded)) return loaded;
    if (!loaded.ok()) down.push_back(absl::StrCat(s->Name(), ": ", loaded.message()));
  }
  if (!down.empty()) {
    if (starting && absl::Now() >= start_deadline_)
      return absl::DeadlineExceededError(absl::StrCat("workers not ready within --workers-wait ",
                                                      absl::FormatDuration(options_.workers_wait), ": ",
                                                      absl::StrJoin(down, "; ")));
    return absl::UnavailableError(absl::StrCat(starting ? "workers unreachable: " : "pipeline not serving: ",
                                               absl::StrJoin(down, "; ")));
  }
  absl::Status wired = Wire();
  if (!wired.ok()) {
    ProbeLocked();
    rewire_ = true;
    for (auto& s : stages_) s->up = s->up && wired_;  // never wired: every stage is loaded again next time
    return absl::UnavailableError(absl::StrCat("pipeline not serving: ", wired.message()));
  }
  rewire_ = false;
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
  // Every stage answered the loading and wiring just now: misses counted while it was away are stale.
  for (auto& s : stages_) health_->Answered(s->index);
  wired_ = true;
  return absl::OkStatus();
}

absl::Status PipelineExecutor::TryRestoreLocked() {
  if (absl::Now() < next_restore_attempt_) return last_restore_error_;
  absl::Status s = RestoreLocked();
  if (s.ok()) {
    restore_backoff_ = absl::ZeroDuration();
    next_restore_attempt_ = absl::InfinitePast();
    return s;
  }
  // 100 ms, 200 ms, ... up to 2 s between attempts while the stages stay away.
  restore_backoff_ = std::clamp(restore_backoff_ * 2, absl::Milliseconds(100), absl::Seconds(2));
  next_restore_attempt_ = absl::Now() + restore_backoff_;
  last_restore_error_ = s;
  return s;
}

void PipelineExecutor::OnStageSilent(int) {
  std::lock_guard<std::mutex> lock(flight_mu_);
  if (!in_flight_.empty()) AbortInFlight();
}

absl::Status PipelineExecutor::Liveness() {
  if (!wired_) return absl::UnavailableError("pipeline not wired yet (waiting for the workers)");
  return health_->Liveness();
}

absl::Status PipelineExecutor::Health() {
  std::lock_guard<std::mutex> lock(mu_);
  if (wired_) {
    if (absl::Status live = health_->Liveness(); !live.ok()) {
      for (auto& s : stages_) s->up = s->up && !health_->silent(s->index);
      return live;
    }
    ProbeLocked();
    bool all_up = !rewire_;
    for (auto& s : stages_) all_up &= s->up;
    if (all_up) return absl::OkStatus();
  }
  return TryRestoreLocked();
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
      st.data_links_accepted = r.data_links_accepted();
      st.data_links_rejected = r.data_links_rejected();
      st.data_frames_rejected = r.data_frames_rejected();
    }
    out.push_back(st);
  }
  return out;
}

std::string PipelineExecutor::RenderMetrics(const std::string& model_name) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return "";  // a restore may hold the stages for long: skip this scrape
  struct Series {
    const char* name;
    const char* help;
    int64_t (v1::StatsResponse::*get)() const;
  };
  const Series series[] = {
      {"layerskip:data_plane_links_accepted_total", "Authenticated inbound data links a stage took.",
       &v1::StatsResponse::data_links_accepted},
      {"layerskip:data_plane_links_rejected_total",
       "Connections a stage's data port refused in the handshake (stranger, wrong token or stage).",
       &v1::StatsResponse::data_links_rejected},
      {"layerskip:data_plane_frames_rejected_total", "Data links a stage closed on a bad frame.",
       &v1::StatsResponse::data_frames_rejected},
  };
  std::vector<std::pair<int, v1::StatsResponse>> got;
  for (auto& s : stages_) {
    if (!s->up) continue;
    auto ctx = MakeContext(options_.token, absl::Milliseconds(300));
    v1::StatsResponse r;
    if (s->stub->Stats(ctx.get(), v1::StatsRequest(), &r).ok()) got.emplace_back(s->index, r);
  }
  if (got.empty()) return "";
  std::string label;  // the label value, escaped
  for (char c : model_name) {
    if (c == '\\' || c == '"') label += '\\';
    if (c == '\n') {
      label += "\\n";
      continue;
    }
    label += c;
  }
  std::string out;
  for (const Series& m : series) {
    absl::StrAppend(&out, "# HELP ", m.name, " ", m.help, "\n# TYPE ", m.name, " counter\n");
    for (const auto& [stage, r] : got)
      absl::StrAppend(&out, m.name, "{model_name=\"", label, "\",stage=\"", stage, "\"} ", (r.*m.get)(), "\n");
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

}  // namespace layerskip::pipeline
