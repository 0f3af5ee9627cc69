#pragma once
// Request accounting: what the engine loop reports to the service's metrics (vLLM's names) as requests are
// refused, admitted, stepped, streamed and finished, and each finished request's summary. Loop thread only
// (Rejected: any thread; the metrics are thread-safe).
#include <cstddef>

#include "coordinator/scheduling/metrics.h"
#include "coordinator/scheduling/micro_batch_scheduler.h"
#include "coordinator/scheduling/request.h"
#include "engine/decode/speculation_policy.h"

namespace layerskip::coordinator {

class RequestAccounting {
 public:
  explicit RequestAccounting(ServiceMetrics* metrics) : metrics_(metrics) {}  // outlives this

  void Rejected() { metrics_->rejected->Add(1); }  // Submit refused it (queue full, never fits, unavailable)
  void Aborted() { metrics_->aborted->Add(1); }    // a running request ended by an engine error
  // Ended by a client cancel, a deadline or the server's stop (cancelled) or by an error (not counted here).
  void Failed(bool cancelled) {
    if (cancelled) metrics_->cancelled->Add(1);
  }
  // Admitted at `now`: its time in the queue and its prompt.
  void Admitted(const Request& r, Clock::time_point now);
  // The running / waiting gauges and the KV-cache usage.
  void Gauges(size_t running, size_t waiting, double kv_usage);
  // The automatic policy's choice for a step, and its measured time ratios.
  void Choice(const SpeculationChoice& c);
  void PolicyScales(double speculative, double autoregressive);
  // After a step of `group`: its autoregressive fallback and the draft counters added since the last report.
  void Stepped(Request& r, const StepGroup& group);
  // `n` new ids of `r` streamed at `now`: generation tokens, time to first token, inter-token latency.
  void Streamed(Request& r, size_t n, Clock::time_point now);
  // The request ended normally (length, stop) or was cancelled by shutdown: its summary, counted.
  RequestSummary Finished(const Request& r, FinishReason reason, Clock::time_point now);

 private:
  ServiceMetrics* metrics_;
};

}  // namespace layerskip::coordinator
