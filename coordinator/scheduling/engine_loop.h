#pragma once
// The one thread that drives the Executor (the model's thread pool is not re-entrant). Each round: drop
// cancelled / expired requests and free their slots, admit waiting requests while slots and KV positions
// allow (new requests join the running batch at round boundaries), start steps for the groups the
// micro-batch scheduler forms while the executor takes more (one at a time in-process; one per stage for a
// pipeline, each with its share of the running requests, oldest first), finish the oldest step, stream its
// new tokens and text, retire finished sequences and Release their slots.
// Beside it, one concern each: the output processor (engine/decode/output_processor.h: detokenisation, stop
// strings), the executor's health (coordinator/execution/executor_health.h: degrade, probe, restore) and
// request accounting (request_accounting.h: metrics and summaries).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/execution/executor_health.h"
#include "coordinator/scheduling/capacity_scheduler.h"
#include "coordinator/scheduling/metrics.h"
#include "coordinator/scheduling/micro_batch_scheduler.h"
#include "coordinator/scheduling/request.h"
#include "coordinator/scheduling/request_accounting.h"
#include "coordinator/scheduling/request_queue.h"
#include "engine/decode/executor.h"
#include "engine/tokenizer/tokenizer.h"

namespace layerskip::coordinator {

struct EngineLoopOptions {
  MicroBatchLimits batch;
  int max_queue = 256;       // waiting requests; more -> RESOURCE_EXHAUSTED
  int64_t kv_positions = 0;  // KV-cache positions all running sequences may reserve (0: slots * context)
  // When a pipeline stage is lost (a step returns UNAVAILABLE), running requests wait this long for it to
  // come back and then continue where they stopped (their caches are re-prefilled; tokens already sent
  // stay sent); past it they end with UNAVAILABLE. 0: they end at once.
  Clock::duration restore_timeout = std::chrono::seconds(30);
};

class EngineLoop {
 public:
  // `executor`, `tokenizer` (may be null) and `metrics` outlive the loop.
  EngineLoop(Executor* executor, const Tokenizer* tokenizer, ServiceMetrics* metrics, EngineLoopOptions options);
  ~EngineLoop();

  // Called once, from the loop thread, when a Step fails: every in-flight request has been failed with
  // INTERNAL and the loop has stopped.
  void SetFatalHandler(std::function<void(const absl::Status&)> handler) { on_fatal_ = std::move(handler); }
  // Called from the loop thread when the executor loses a part (a Step returned UNAVAILABLE: false) and
  // when probing finds it restored (true).
  void SetHealthHandler(std::function<void(bool)> handler) { health_.SetHandler(std::move(handler)); }
  void Start();

  // Queues a validated request. RESOURCE_EXHAUSTED when the queue is full or the request could never fit
  // the KV cache; UNAVAILABLE when the server is draining or the engine has failed. On error nothing is
  // sent to the sink.
  absl::Status Submit(std::shared_ptr<Request> request);
  // Marks the request cancelled (client cancel, deadline) and wakes the loop: it leaves within one round.
  void Cancel(Request* request);

  // Graceful shutdown: refuse new requests; WaitIdle until in-flight ones finish; CancelAll the rest; Stop.
  void StopAccepting();
  bool WaitIdle(Clock::duration timeout);  // true when nothing is running or waiting
  void CancelAll();                        // ends every request with finish reason "cancelled"
  void Stop();                             // joins the thread

  int num_slots() const { return executor_->num_slots(); }
  int context_length() const { return executor_->context_length(); }
  const EngineLoopOptions& options() const { return options_; }
  bool failed() const { return failed_.load(); }
  bool degraded() const { return health_.degraded(); }

 private:
  void Run();
  void Round();
  // Admits waiting requests; drops cancelled ones (mu_ held).
  void AdmitLocked();
  void Retire(Request& r, FinishReason reason);                      // finished or cancelled by shutdown
  void Fail(Request& r, const absl::Status& status, bool cancelled);  // client cancel / deadline / error
  void ReleaseSlot(Request& r);
  void EmitNew(Request& r);
  // Automatic speculation: the policy picks this group's E and d (those the requests leave to the server)
  // for its size, or an autoregressive step, and marks the step for timing.
  void ApplyPolicy(StepGroup& group);
  // After the group's step: the request's accept counts, and (once per step) the step's measured time,
  // feed the policy, so its choice follows the machine when the load changes after calibration.
  void ObservePolicy(Request& r, const StepGroup& group);
  void UpdateGauges();  // mu_ held
  // A step returned UNAVAILABLE: admission pauses until ProbeHealth finds the executor restored. Running
  // requests are suspended (their caches forgotten) for up to restore_timeout, or end with the error.
  void Degrade(const absl::Status& status);
  void ProbeHealth();  // while degraded: health_.Probe(); a fatal answer fails everything
  // While degraded (mu_ held): suspended requests that were cancelled, expired, or outlived the
  // restore timeout end.
  void ExpireSuspendedLocked();
  // Requests not in a step in flight that were cancelled, expired, or cancelled by shutdown end (mu_ held).
  void DropLeavingLocked(Clock::time_point now);
  void FailRunningLocked(const absl::Status& status);  // every running request ends with `status`
  // Starts steps while the executor takes more; false after a failed start (handled).
  bool StartSteps();
  // A step failed to start or finish: finish the others, then Degrade (UNAVAILABLE) or fail everything.
  void StepFailed(const absl::Status& status);
  void DrainInFlight();  // finishes every step in flight, ignoring results

  Executor* executor_;
  const Tokenizer* tokenizer_;
  RequestAccounting accounting_;
  EngineLoopOptions options_;
  ExecutorHealth health_;
  CapacityScheduler capacity_;
  MicroBatchScheduler micro_;
  std::function<void(const absl::Status&)> on_fatal_;

  std::mutex mu_;
  std::condition_variable cv_;
  RequestQueue waiting_;                           // guarded by mu_
  std::vector<std::shared_ptr<Request>> running_;  // guarded by mu_ (written by the loop thread only)
  bool stop_ = false, accepting_ = true, cancel_all_ = false;
  std::atomic<bool> failed_{false};
  uint64_t next_id_ = 1;
  struct Flight {
    uint64_t id = 0;  // the executor's step id
    StepGroup group;
  };
  std::deque<Flight> in_flight_;  // oldest first (loop thread only)
  uint64_t step_counter_ = 0;
  std::unique_ptr<SpeculationPolicy> policy_;  // automatic speculation, shared by every batch (loop thread)
  std::thread thread_;
};

}  // namespace layerskip::coordinator
