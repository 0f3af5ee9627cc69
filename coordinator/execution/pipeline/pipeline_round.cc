// The steps in flight of a PipelineExecutor, each driven by its own thread (docs/pipeline.md). A step is
// one self-speculative round (or an autoregressive / early-exit step) of a micro-batch across the stages.
//
//   StartStep (scheduler thread)   Drive (step thread)                        FinishStep (scheduler thread)
//   build Draft, launch on stage 0 -> wait for drafts -> Verify on stages 1.. -> join; accept; new lengths
//                                                                               ride on the slot's next call
// Sequences are read in StartStep and written in FinishStep only, both on the scheduler's thread.
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/speculative_phases.h"
#include "engine/decode/autoregressive_step.h"
#include "engine/util/status.h"

namespace layerskip::pipeline {
namespace {

double Now() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

}  // namespace

PipelineExecutor::~PipelineExecutor() {
  health_.reset();  // its threads call OnStageSilent
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(flight_mu_);
    for (auto& [id, r] : in_flight_) ids.push_back(id);
  }
  for (uint64_t id : ids) FinishStep(id).IgnoreError();
}

int PipelineExecutor::max_in_flight() const {
  return options_.micro_batches > 0 ? options_.micro_batches : std::max<int>(1, static_cast<int>(plan_.size()));
}

absl::Status PipelineExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  std::vector<Sequence*> active;
  for (Sequence* s : seqs)
    if (!s->finished()) active.push_back(s);
  if (active.empty()) return absl::OkStatus();
  // Micro-batches: contiguous, as even as possible, all in flight at once.
  const int M = std::clamp(max_in_flight(), 1, static_cast<int>(active.size()));
  std::vector<std::vector<Sequence*>> mbs(M);
  for (size_t i = 0; i < active.size(); ++i) mbs[i * M / active.size()].push_back(active[i]);
  absl::Status first;
  std::vector<uint64_t> ids;
  for (const auto& mb : mbs) {
    absl::StatusOr<uint64_t> id = StartStep(mb, options);
    if (!id.ok()) {
      first = id.status();
      break;
    }
    ids.push_back(*id);
  }
  for (uint64_t id : ids) {
    absl::Status s = FinishStep(id);
    if (first.ok()) first = s;
  }
  return first;
}

absl::Status PipelineExecutor::CheckStagesUp() {
  LS_RETURN_IF_ERROR(Liveness());  // a silent stage: fail at once rather than at the step's deadline
  std::lock_guard<std::mutex> lock(mu_);
  bool all_up = !rewire_;
  for (auto& s : stages_) all_up &= s->up;
  if (all_up) return absl::OkStatus();
  // With backoff: a step against a dead stage fails at once instead of waiting for it.
  return TryRestoreLocked();
}

absl::StatusOr<uint64_t> PipelineExecutor::StartStep(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  auto r = std::make_unique<StepInFlight>();
  for (Sequence* s : seqs)
    if (!s->finished()) r->seqs.push_back(s);
  for (Sequence* s : r->seqs)
    if (s->slot() < 0 || s->slot() >= options_.num_slots)
      return absl::InvalidArgumentError(absl::StrCat("slot ", s->slot(), " outside [0, ", options_.num_slots, ")"));
  {
    std::lock_guard<std::mutex> lock(flight_mu_);
    if (aborting_) return absl::UnavailableError("a pipeline round failed; finish the rounds in flight first");
    r->id = next_step_++;
  }
  if (!r->seqs.empty()) {
    LS_RETURN_IF_ERROR(CheckStagesUp());
    switch (options.mode) {
      case DecodeMode::kAutoregressive:
      case DecodeMode::kSelfSpeculative:
        LS_RETURN_IF_ERROR(StartSpeculative(*r, options));
        break;
      case DecodeMode::kEarlyExit:
        LS_RETURN_IF_ERROR(StartEarlyExit(*r, options.exit_layer));
        break;
    }
  }
  const uint64_t id = r->id;
  std::lock_guard<std::mutex> lock(flight_mu_);
  StepInFlight* round = r.get();
  in_flight_[id] = std::move(r);
  if (round->draft) round->driver = std::thread([this, round] { Drive(round); });
  return id;
}

absl::Status PipelineExecutor::StartEarlyExit(StepInFlight& r, int exit_layer) {
  if (exit_layer < 1 || exit_layer > this->exit_layer())
    return absl::InvalidArgumentError(absl::StrCat("early exit at layer ", exit_layer, ": the pipeline's draft stage holds "
                                                   "layers [0, ", this->exit_layer(), ")"));
  r.early_exit = true;
  v1::DraftRequest req;
  req.set_round(r.id);
  req.set_early_exit_layer(exit_layer);
  for (Sequence* s : r.seqs) {
    v1::DraftSequence* d = req.add_seqs();
    d->set_slot(s->slot());
    d->set_cached(s->cached());
    d->set_prompt_tokens(static_cast<int>(s->prompt().size()));
    d->mutable_pending()->Add(s->pending().begin(), s->pending().end());
    d->mutable_sampling()->set_temperature(s->params().sampling.temperature);
  }
  for (Sequence* s : r.seqs) r.rows += static_cast<int>(s->pending().size());
  r.started = Now();
  r.deadline = absl::Now() + step_deadline_.Budget(r.rows);
  r.draft = Launch(stages_[0].get(), options_.token, r.deadline - absl::Now(), &v1::Worker::Stub::Draft, std::move(req));
  return absl::OkStatus();
}

absl::Status PipelineExecutor::StartSpeculative(StepInFlight& r, const DecodeOptions& options) {
  SpeculationConfig& cfg = r.cfg;
  cfg = options.speculation;
  if (options.mode == DecodeMode::kAutoregressive) {  // a round without drafts is one autoregressive step
    cfg.speculations = 0;
    cfg.adaptive = false;
  } else if (options.exit_layer != exit_layer()) {
    return absl::InvalidArgumentError(absl::StrCat("exit layer ", options.exit_layer, ": this pipeline drafts with layers [0, ",
                                                   exit_layer(), ") on stage 0, so requests must use exit layer ", exit_layer()));
  }
  LS_RETURN_IF_ERROR(ValidateSpeculation(cfg, exit_layer(), config_.num_hidden_layers));
  v1::DraftRequest req;
  req.set_round(r.id);
  req.set_exit_layer(exit_layer());
  req.set_adaptive(cfg.adaptive);
  req.set_confidence_threshold(cfg.confidence_threshold);
  r.verify.set_round(r.id);
  for (Sequence* s : r.seqs) {
    // `cached` is also the accepted length of the slot's previous round: each stage rolls back to it.
    v1::DraftSequence* d = req.add_seqs();
    d->set_slot(s->slot());
    d->set_cached(s->cached());
    d->set_prompt_tokens(static_cast<int>(s->prompt().size()));
    d->mutable_pending()->Add(s->pending().begin(), s->pending().end());
    d->set_max_drafts(MaxDrafts(*s, cfg, context_));
    d->mutable_eos_ids()->Add(s->params().eos_ids.begin(), s->params().eos_ids.end());
    const SamplingParams& sp = s->params().sampling;
    d->mutable_sampling()->set_temperature(sp.temperature);
    d->mutable_sampling()->set_top_k(sp.top_k);
    d->mutable_sampling()->set_top_p(sp.top_p);
    if (!sp.greedy()) {  // the generator stays here; stage 0 gets the draws it may need
      Rng copy = s->rng();
      for (int i = 0; i < d->max_drafts(); ++i) d->add_uniforms(copy.Uniform());
    }
    v1::VerifySequence* v = r.verify.add_seqs();
    v->set_slot(s->slot());
    v->set_cached(s->cached());
    v->set_prompt_tokens(static_cast<int>(s->prompt().size()));
    v->set_want_logits(!sp.greedy());
    r.rows += static_cast<int>(s->pending().size()) + d->max_drafts() + 1;
  }
  r.started = Now();
  r.deadline = absl::Now() + step_deadline_.Budget(r.rows);
  r.draft = Launch(stages_[0].get(), options_.token, r.deadline - absl::Now(), &v1::Worker::Stub::Draft, std::move(req));
  return absl::OkStatus();
}

void PipelineExecutor::Drive(StepInFlight* r) {
  const grpc::Status st = r->draft->Wait();
  r->drafted = Now();
  auto fail = [&](absl::Status s) {
    r->status = std::move(s);
    std::lock_guard<std::mutex> lock(flight_mu_);
    AbortInFlight();
  };
  if (!st.ok()) return fail(FromGrpc(st, absl::StrCat(r->early_exit ? "early exit" : "draft", " on ", stages_[0]->Name())));
  const v1::DraftResponse& drafted = r->draft->response;
  if (drafted.results_size() != static_cast<int>(r->seqs.size()))
    return fail(absl::InternalError("draft: wrong result count"));
  if (r->early_exit) return;
  // Verification on every later stage; the activations travel stage to stage over the transport.
  for (int j = 0; j < drafted.results_size(); ++j) {
    v1::VerifySequence* v = r->verify.mutable_seqs(j);
    v->set_rows(drafted.results(j).rows());
    *v->mutable_drafts() = drafted.results(j).drafts();
  }
  {
    std::lock_guard<std::mutex> lock(flight_mu_);
    if (aborting_) {
      r->status = absl::UnavailableError("cancelled: another pipeline round failed");
      return;
    }
    for (size_t i = 1; i < stages_.size(); ++i)
      r->verifies.push_back(Launch(stages_[i].get(), options_.token, r->deadline - absl::Now(), &v1::Worker::Stub::Verify, r->verify));
  }
  absl::Status verified = WaitAll(r->verifies, "verify");
  r->verified = Now();
  if (!verified.ok()) return fail(std::move(verified));
  if (r->verifies.back()->response.results_size() != static_cast<int>(r->seqs.size()))
    return fail(absl::InternalError("verify: wrong result count"));
}

void PipelineExecutor::AbortInFlight() {
  aborting_ = true;
  for (auto& [id, r] : in_flight_) {
    if (r->draft) r->draft->Cancel();
    for (auto& v : r->verifies) v->Cancel();
  }
}

absl::Status PipelineExecutor::FinishStep(uint64_t id) {
  StepInFlight* r = nullptr;
  {
    std::lock_guard<std::mutex> lock(flight_mu_);
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) return absl::InvalidArgumentError("FinishStep: no such step in flight");
    r = it->second.get();
  }
  if (r->driver.joinable()) r->driver.join();
  std::unique_ptr<StepInFlight> done;
  {
    std::lock_guard<std::mutex> lock(flight_mu_);
    auto it = in_flight_.find(id);
    done = std::move(it->second);
    in_flight_.erase(it);
    if (in_flight_.empty()) aborting_ = false;
  }
  if (!done->status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    return FailLocked(done->status);
  }
  if (done->seqs.empty()) return absl::OkStatus();
  step_deadline_.Record(Now() - done->started, done->rows);
  return done->early_exit ? ApplyEarlyExit(*done) : ApplySpeculative(*done);
}

absl::Status PipelineExecutor::ApplyEarlyExit(StepInFlight& r) {
  const int V = config_.vocab_size;
  for (size_t j = 0; j < r.seqs.size(); ++j) {
    Sequence& s = *r.seqs[j];
    const v1::DraftResult& res = r.draft->response.results(static_cast<int>(j));
    s.MarkPendingCached();
    if (s.params().sampling.greedy()) {
      s.Append(res.token(), context_);
    } else {
      if (res.logits_size() != V) return absl::InternalError("early exit: logits row has the wrong size");
      s.Append(ChooseToken(res.logits().data(), V, s), context_);
    }
  }
  return absl::OkStatus();
}

// Accept here (stop conditions, the sequences' generators); the new lengths reach the stages with the
// slots' next Draft / Verify.
absl::Status PipelineExecutor::ApplySpeculative(StepInFlight& r) {
  const int V = config_.vocab_size;
  const v1::DraftResponse& drafted = r.draft->response;
  const v1::VerifyResponse& verdict = r.verifies.back()->response;
  for (size_t j = 0; j < r.seqs.size(); ++j) {
    Sequence& s = *r.seqs[j];
    const v1::DraftResult& d = drafted.results(static_cast<int>(j));
    const v1::VerifyResult& v = verdict.results(static_cast<int>(j));
    const std::vector<int> tokens(d.drafts().begin(), d.drafts().end());
    const int k = static_cast<int>(tokens.size());
    if (!s.params().sampling.greedy()) {
      for (int u = 0; u < d.uniforms_used(); ++u) s.rng().Uniform();
    }
    std::vector<std::vector<float>> q;
    for (int i = 0; i < k && d.q_size() >= (i + 1) * V; ++i) q.emplace_back(d.q().begin() + i * V, d.q().begin() + (i + 1) * V);
    VerifierRows rows;
    if (s.params().sampling.greedy()) {
      rows.targets.assign(v.targets().begin(), v.targets().end());
      if (static_cast<int>(rows.targets.size()) != k + 1) return absl::InternalError("verify: wrong number of targets");
    } else {
      if (v.logits_size() != (k + 1) * V || static_cast<int>(q.size()) != k)
        return absl::InternalError("verify: sampling rows missing");
      rows.logits = v.logits().data();
    }
    FinishRound(s, tokens, q, rows, V, context_, r.cfg);
    SpecStats& st = s.stats();
    st.draft_seconds += r.drafted - r.started;
    st.verify_seconds += r.verified - r.drafted;
  }
  return absl::OkStatus();
}

}  // namespace layerskip::pipeline
