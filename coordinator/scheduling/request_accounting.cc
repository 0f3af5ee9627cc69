#include "coordinator/scheduling/request_accounting.h"

namespace layerskip::coordinator {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

void RequestAccounting::Admitted(const Request& r, Clock::time_point now) {
  metrics_->queue_time->Observe(Seconds(now - r.arrival));
  metrics_->prompt_tokens->Add(static_cast<double>(r.spec.prompt.size()));
  metrics_->prompt_len->Observe(static_cast<double>(r.spec.prompt.size()));
}

void RequestAccounting::Gauges(size_t running, size_t waiting, double kv_usage) {
  metrics_->running->Set(static_cast<double>(running));
  metrics_->waiting->Set(static_cast<double>(waiting));
  metrics_->kv_usage->Set(kv_usage);
}

void RequestAccounting::Choice(const SpeculationChoice& c) {
  metrics_->draft_length->Set(c.speculations);
  metrics_->exit_layer->Set(c.exit_layer);
  metrics_->predicted_speedup->Set(c.predicted_speedup);
}

void RequestAccounting::PolicyScales(double speculative, double autoregressive) {
  metrics_->round_time_ratio->Set(speculative);
  metrics_->autoregressive_time_ratio->Set(autoregressive);
}

void RequestAccounting::Stepped(Request& r, const StepGroup& group) {
  if (group.speculation_off) {
    ++r.autoregressive_steps;
    metrics_->autoregressive_fallback_steps->Add(1);
  }
  const SpecStats& s = r.seq->stats();
  SpecStats& done = r.reported;
  if (s.rounds == done.rounds && s.drafted == done.drafted) return;
  metrics_->num_drafts->Add(static_cast<double>(s.rounds - done.rounds));
  metrics_->num_draft_tokens->Add(static_cast<double>(s.drafted - done.drafted));
  metrics_->num_accepted_tokens->Add(static_cast<double>(s.accepted - done.accepted));
  done.accepted_per_position.resize(s.accepted_per_position.size(), 0);
  for (size_t i = 0; i < s.accepted_per_position.size(); ++i) {
    const int64_t d = s.accepted_per_position[i] - done.accepted_per_position[i];
    metrics_->AddAcceptedAtPosition(static_cast<int>(i), static_cast<double>(d));
  }
  done.rounds = s.rounds;
  done.drafted = s.drafted;
  done.accepted = s.accepted;
  done.accepted_per_position = s.accepted_per_position;
}

void RequestAccounting::Streamed(Request& r, size_t n, Clock::time_point now) {
  if (n == 0) return;
  metrics_->generation_tokens->Add(static_cast<double>(n));
  if (r.first_token == Clock::time_point{}) {
    r.first_token = now;
    metrics_->ttft->Observe(Seconds(now - r.arrival));
    for (size_t i = 1; i < n; ++i) metrics_->itl->Observe(0.0);
  } else {
    // k tokens accepted in one round: each gets an equal share of the time since the last ones.
    const double each = Seconds(now - r.last_token) / static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) metrics_->itl->Observe(each);
  }
  r.last_token = now;
}

RequestSummary RequestAccounting::Finished(const Request& r, FinishReason reason, Clock::time_point now) {
  RequestSummary s;
  s.finish_reason = reason;
  s.prompt_tokens = static_cast<int>(r.spec.prompt.size());
  s.completion_tokens = r.seq ? static_cast<int>(r.seq->generated().size()) : 0;
  if (r.seq) s.spec = r.seq->stats();
  s.autoregressive_steps = r.autoregressive_steps;
  s.queue_seconds = Seconds((r.seq ? r.admitted : now) - r.arrival);
  s.ttft_seconds = r.first_token == Clock::time_point{} ? 0.0 : Seconds(r.first_token - r.arrival);
  s.e2e_seconds = Seconds(now - r.arrival);
  s.options = r.spec.options;
  metrics_->e2e->Observe(s.e2e_seconds);
  metrics_->generation_len->Observe(s.completion_tokens);
  if (reason == FinishReason::kLength) metrics_->success_length->Add(1);
  else if (reason == FinishReason::kStop) metrics_->success_stop->Add(1);
  else metrics_->cancelled->Add(1);
  return s;
}

}  // namespace layerskip::coordinator
