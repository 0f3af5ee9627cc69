#include "coordinator/scheduling/engine_loop.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

EngineLoop::EngineLoop(Executor* executor, const Tokenizer* tokenizer, ServiceMetrics* metrics,
                       EngineLoopOptions options)
    : executor_(executor),
      tokenizer_(tokenizer),
      accounting_(metrics),
      options_(options),
      health_(executor, options.restore_timeout),
      capacity_(executor->num_slots(), executor->context_length(), options.kv_positions),
      micro_(options.batch),
      waiting_(static_cast<size_t>(std::max(0, options.max_queue))) {}

EngineLoop::~EngineLoop() { Stop(); }

void EngineLoop::Start() { thread_ = std::thread([this] { Run(); }); }

void EngineLoop::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status EngineLoop::Submit(std::shared_ptr<Request> request) {
  const int64_t need = capacity_.Need(static_cast<int>(request->spec.prompt.size()), request->spec.params.max_tokens);
  absl::Status status = capacity_.CheckCanEverFit(need);
  const absl::Status live = executor_->Liveness();  // e.g. not wired yet: refuse before the loop notices
  {
    std::lock_guard<std::mutex> l(mu_);
    if (failed_) status = absl::UnavailableError("the engine has failed");
    else if (health_.degraded()) status = absl::UnavailableError("a pipeline stage is down; retry when health is SERVING");
    else if (!live.ok()) status = absl::UnavailableError(absl::StrCat(live.message(), "; retry when health is SERVING"));
    else if (!accepting_) status = absl::UnavailableError("the server is shutting down");
    if (status.ok()) {
      request->id = next_id_++;
      if (!waiting_.TryPush(request))
        status = absl::ResourceExhaustedError(
            absl::StrCat("the waiting queue is full (", waiting_.capacity(), " requests); retry later"));
    }
    if (status.ok()) UpdateGauges();
  }
  if (!status.ok()) {
    accounting_.Rejected();
    return status;
  }
  cv_.notify_all();
  return absl::OkStatus();
}

void EngineLoop::Cancel(Request* request) {
  request->cancelled = true;
  cv_.notify_all();
}

void EngineLoop::StopAccepting() {
  std::lock_guard<std::mutex> l(mu_);
  accepting_ = false;
}

bool EngineLoop::WaitIdle(Clock::duration timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return (running_.empty() && waiting_.empty()) || failed_; });
}

void EngineLoop::CancelAll() {
  {
    std::lock_guard<std::mutex> l(mu_);
    cancel_all_ = true;
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return (running_.empty() && waiting_.empty()) || failed_ || !thread_.joinable(); });
}

void EngineLoop::UpdateGauges() {
  accounting_.Gauges(running_.size(), waiting_.size(), capacity_.usage());
}

void EngineLoop::Run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      // Sleep while there is nothing to step; wake for submissions, cancellations and (every 20 ms while
      // requests wait) deadlines.
      cv_.wait_for(l, std::chrono::milliseconds(20), [&] {
        if (stop_ || cancel_all_) return true;
        if (health_.degraded()) return false;  // probe every 20 ms tick
        if (!running_.empty()) return true;
        if (waiting_.empty()) return false;
        return capacity_.free_slots() > 0 || waiting_.front()->cancelled.load();
      });
      if (stop_) break;
      if (!health_.degraded()) {
        // A stage that stopped answering heartbeats (or a pipeline not wired yet): like a failed step.
        if (absl::Status live = executor_->Liveness(); !live.ok()) {
          l.unlock();
          StepFailed(live);
          continue;
        }
      }
      if (health_.degraded()) {
        l.unlock();
        ProbeHealth();
        if (failed_) break;
        l.lock();
        if (health_.degraded()) {
          ExpireSuspendedLocked();
          continue;
        }
      }
      AdmitLocked();
      if (running_.empty()) {
        cv_.notify_all();  // WaitIdle / CancelAll
        continue;
      }
    }
    Round();
    if (failed_) break;
  }
  // Stopping: whatever is left ends as cancelled.
  DrainInFlight();
  std::lock_guard<std::mutex> l(mu_);
  for (auto& r : waiting_.Clear()) Fail(*r, absl::CancelledError("the server stopped"), true);
  for (auto& r : running_) {
    ReleaseSlot(*r);
    Fail(*r, absl::CancelledError("the server stopped"), true);
  }
  running_.clear();
  UpdateGauges();
  cv_.notify_all();
}

void EngineLoop::Degrade(const absl::Status& status) {
  health_.Degrade(status);
  std::lock_guard<std::mutex> l(mu_);
  if (health_.suspends()) {
    // Suspend: every slot's cache is suspect once a stage restarts, so each sequence will re-prefill its
    // prompt and the tokens it has generated (batch-invariant kernels: the same next tokens).
    for (auto& r : running_) {
      executor_->Release(r->seq->slot());
      r->seq->ForgetCache();
    }
    if (running_.empty())
      std::fprintf(stderr, "layerskip-coordinator: %s\n", std::string(status.message()).c_str());
    else
      std::fprintf(stderr, "layerskip-coordinator: %s; %zu running requests wait up to %.0f s for it\n",
                   std::string(status.message()).c_str(), running_.size(), Seconds(options_.restore_timeout));
  } else {
    FailRunningLocked(absl::UnavailableError(absl::StrCat("the engine lost a stage: ", status.message())));
  }
  UpdateGauges();
  cv_.notify_all();
}

void EngineLoop::FailRunningLocked(const absl::Status& status) {
  for (auto& r : running_) {
    ReleaseSlot(*r);
    accounting_.Aborted();
    Fail(*r, status, false);
  }
  running_.clear();
}

void EngineLoop::DropLeavingLocked(Clock::time_point now) {
  for (auto it = running_.begin(); it != running_.end();) {
    Request& r = **it;
    const bool deadline = r.deadline && now >= *r.deadline;
    if (!r.in_flight && (r.cancelled || deadline || cancel_all_)) {
      ReleaseSlot(r);
      if (cancel_all_ && !r.cancelled && !deadline) Retire(r, FinishReason::kCancelled);
      else Fail(r, deadline ? absl::DeadlineExceededError("the deadline expired") : absl::CancelledError("cancelled"), true);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void EngineLoop::ExpireSuspendedLocked() {
  const Clock::time_point now = Clock::now();
  DropLeavingLocked(now);
  if (!running_.empty() && health_.RestoreTimedOut(now)) FailRunningLocked(health_.RestoreFailed());
  UpdateGauges();
  cv_.notify_all();
}

void EngineLoop::ProbeHealth() {
  if (absl::Status h = health_.Probe(); !h.ok()) {
    StepFailed(h);  // e.g. the workers refused the token at start: fatal
    return;
  }
  if (!health_.degraded()) cv_.notify_all();  // restored
}

void EngineLoop::AdmitLocked() {
  const Clock::time_point now = Clock::now();
  auto expired = [&](const Request& r) { return r.cancelled.load() || (r.deadline && now >= *r.deadline); };
  for (auto& r : waiting_.RemoveIf(expired)) {
    const bool deadline = !r->cancelled && r->deadline && now >= *r->deadline;
    Fail(*r, deadline ? absl::DeadlineExceededError("the deadline expired while waiting")
                      : absl::CancelledError("cancelled while waiting"), true);
  }
  if (cancel_all_) {
    for (auto& r : waiting_.Clear()) Retire(*r, FinishReason::kCancelled);
  }
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.batch.max_batch_size) {
    Request& r = *waiting_.front();
    const int64_t need = capacity_.Need(static_cast<int>(r.spec.prompt.size()), r.spec.params.max_tokens);
    std::optional<int> slot = capacity_.TryAdmit(need);
    if (!slot) break;  // first come, first served: later requests wait behind it
    std::shared_ptr<Request> req = waiting_.PopFront();
    req->reserved_positions = need;
    req->admitted = now;
    GenerationParams params = req->spec.params;
    const StopStrings stops(req->spec.stop);
    if (!stops.empty() && tokenizer_) params.stop_check = MakeStopCheck(tokenizer_, stops);
    executor_->Release(*slot);
    req->seq = std::make_unique<Sequence>(*slot, req->spec.prompt, std::move(params));
    if (tokenizer_) req->output = std::make_unique<OutputProcessor>(tokenizer_, stops);
    accounting_.Admitted(*req, now);
    running_.push_back(std::move(req));
  }
  UpdateGauges();
}

void EngineLoop::Round() {
  // Leave: cancelled by the client, past the deadline, or cancelled by shutdown (a request in a step in
  // flight leaves when its step has finished).
  {
    std::lock_guard<std::mutex> l(mu_);
    DropLeavingLocked(Clock::now());
    UpdateGauges();
    if (running_.empty()) {
      cv_.notify_all();
      return;
    }
  }
  if (!StartSteps() || in_flight_.empty()) return;

  // Finish the oldest step.
  Flight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  const absl::Status s = executor_->FinishStep(f.id);
  for (Request* r : f.group.requests) {
    r->in_flight = false;
    r->last_step = ++step_counter_;
  }
  if (!s.ok()) {
    StepFailed(s);
    return;
  }
  for (Request* r : f.group.requests) {
    ObservePolicy(*r, f.group);
    accounting_.Stepped(*r, f.group);
    EmitNew(*r);
  }

  // Retire the finished ones.
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = running_.begin(); it != running_.end();) {
    Request& r = **it;
    if (!r.in_flight && r.seq->finished()) {
      ReleaseSlot(r);
      Retire(r, r.seq->finish_reason());
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  UpdateGauges();
  cv_.notify_all();
}

bool EngineLoop::StartSteps() {
  const int max_flight = std::max(1, executor_->max_in_flight());
  while (static_cast<int>(in_flight_.size()) < max_flight) {
    // Each step takes its share of the running requests, those that waited longest first.
    std::vector<Request*> idle;
    for (auto& r : running_)
      if (!r->in_flight) idle.push_back(r.get());
    if (idle.empty()) break;
    std::stable_sort(idle.begin(), idle.end(), [](const Request* a, const Request* b) { return a->last_step < b->last_step; });
    const size_t share = (running_.size() + max_flight - 1) / max_flight;
    if (idle.size() > share) idle.resize(share);
    std::vector<StepGroup> groups = micro_.Schedule(idle);
    if (groups.empty()) break;
    StepGroup& g = groups.front();
    ApplyPolicy(g);
    std::vector<Sequence*> seqs;
    for (Request* r : g.requests) seqs.push_back(r->seq.get());
    const absl::StatusOr<uint64_t> id = executor_->StartStep(seqs, g.options);
    if (!id.ok()) {
      StepFailed(id.status());
      return false;
    }
    for (Request* r : g.requests) r->in_flight = true;
    in_flight_.push_back(Flight{*id, std::move(g)});
  }
  return true;
}

void EngineLoop::DrainInFlight() {
  for (Flight& f : in_flight_) {
    executor_->FinishStep(f.id).IgnoreError();
    for (Request* r : f.group.requests) r->in_flight = false;
  }
  in_flight_.clear();
}

void EngineLoop::StepFailed(const absl::Status& s) {
  DrainInFlight();  // every step's caches are suspect now; their requests end below
  if (absl::IsUnavailable(s)) {
    Degrade(s);
    return;
  }
  // A fatal engine error: every cache is suspect. Health turns NOT_SERVING first (so a client that sees its
  // stream fail then sees the probe fail too), then everything fails and the server exits.
  failed_ = true;
  if (on_fatal_) on_fatal_(s);
  const absl::Status err = absl::InternalError(absl::StrCat("engine error: ", s.message()));
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& r : running_) {
      accounting_.Aborted();
      Fail(*r, err, false);
    }
    running_.clear();
    for (auto& r : waiting_.Clear()) Fail(*r, err, false);
    UpdateGauges();
  }
  cv_.notify_all();
}

void EngineLoop::ApplyPolicy(StepGroup& g) {
  if (!g.options.automatic() || g.speculation_off) return;
  const DecodeOptions& o = g.options;
  if (!o.auto_speculations && o.speculation.speculations < 1) return;  // auto E with no drafts: nothing to choose
  if (!policy_) {  // one policy for every batch: each batch's own fixed E or d restricts its Choose
    DecodeOptions all = o;
    all.auto_exit_layer = all.auto_speculations = true;
    policy_ = std::make_unique<SpeculationPolicy>(MakePolicy(all));
  }
  const int batch = static_cast<int>(g.requests.size());
  const SpeculationChoice c = policy_->Choose(batch, o.auto_exit_layer ? 0 : o.exit_layer,
                                              o.auto_speculations ? 0 : o.speculation.speculations);
  for (Request* r : g.requests) r->seq->stats().RecordChoice(c.speculations ? c.exit_layer : 0, c.speculations, c.predicted_speedup);
  accounting_.Choice(c);
  // Time the step against the prediction unless it prefills a prompt (not what the cost model predicts) or
  // overlaps other steps (a pipeline keeps several in flight, so its wall time is not the step's cost).
  bool prefill = false;
  for (Request* r : g.requests) prefill |= r->seq->pending().size() > 1;
  if (!prefill && executor_->max_in_flight() == 1) {
    g.policy_d = c.speculations;
    g.policy_timed_exit_layer = c.exit_layer;
    g.policy_batch = batch;
  }
  if (c.speculations == 0) {
    g.options = DecodeOptions{};  // autoregressive: the same greedy tokens, the same sampling distribution
    g.speculation_off = true;
  } else {
    g.options.auto_speculations = g.options.auto_exit_layer = false;
    g.options.exit_layer = c.exit_layer;  // lossless per step: every layer's cache has the same length
    g.options.speculation.adaptive = false;
    g.options.speculation.speculations = c.speculations;
    g.policy_exit_layer = c.exit_layer;
  }
  g.policy_started = Clock::now();  // the step starts right after this
}

void EngineLoop::ObservePolicy(Request& r, const StepGroup& group) {
  if (!policy_) return;
  if (group.policy_exit_layer > 0)
    policy_->Observe(group.policy_exit_layer, static_cast<int>(r.seq->stats().drafted - r.reported.drafted),
                     static_cast<int>(r.seq->stats().accepted - r.reported.accepted));
  if (group.policy_d >= 0 && &r == group.requests.front()) {  // once per step, before any token is streamed
    policy_->ObserveTime(group.policy_timed_exit_layer, group.policy_d, group.policy_batch,
                         Seconds(Clock::now() - group.policy_started));
    accounting_.PolicyScales(policy_->speculative_scale(), policy_->autoregressive_scale());
  }
}

void EngineLoop::EmitNew(Request& r) {
  const std::vector<int>& gen = r.seq->generated();
  std::vector<int> ids(gen.begin() + static_cast<std::ptrdiff_t>(r.streamed_ids), gen.end());
  r.streamed_ids = gen.size();
  accounting_.Streamed(r, ids.size(), Clock::now());
  const std::string delta = r.output ? r.output->Feed(ids, r.seq->finished()) : std::string();
  if (!ids.empty() || !delta.empty()) r.sink->OnTokens(ids, delta);
}

void EngineLoop::ReleaseSlot(Request& r) {
  if (!r.seq) return;
  executor_->Release(r.seq->slot());
  capacity_.Release(r.seq->slot(), r.reserved_positions);
  r.reserved_positions = 0;
}

void EngineLoop::Retire(Request& r, FinishReason reason) {
  r.sink->OnFinish(accounting_.Finished(r, reason, Clock::now()));
}

void EngineLoop::Fail(Request& r, const absl::Status& status, bool cancelled) {
  accounting_.Failed(cancelled);
  r.sink->OnError(status);
}

}  // namespace layerskip::coordinator
