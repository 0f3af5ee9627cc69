#pragma once
// The executor's health as the engine loop sees it: degraded when a step returns UNAVAILABLE (a pipeline
// stage was lost), probed while degraded, restored when its Health is OK again. The loop decides what
// happens to its requests (suspend up to the restore timeout, or fail them). Loop thread only, except
// degraded() (any thread).
#include <atomic>
#include <chrono>
#include <functional>

#include "absl/status/status.h"
#include "engine/decode/executor.h"

namespace layerskip::coordinator {

class ExecutorHealth {
 public:
  using Clock = std::chrono::steady_clock;

  // `executor` outlives this. restore_timeout: how long suspended requests wait for a restore (0: none).
  ExecutorHealth(Executor* executor, Clock::duration restore_timeout)
      : executor_(executor), restore_timeout_(restore_timeout) {}

  // Told false when the executor degrades and true when it is restored (called from the loop thread).
  void SetHandler(std::function<void(bool)> handler) { on_health_ = std::move(handler); }
  bool degraded() const { return degraded_.load(); }
  // Whether running requests are suspended while degraded (a restore timeout is set) or end at once.
  bool suspends() const { return restore_timeout_ > Clock::duration::zero(); }
  Clock::duration restore_timeout() const { return restore_timeout_; }

  // A step (or liveness) returned UNAVAILABLE with `cause`: degraded from now on.
  void Degrade(const absl::Status& cause);
  // While degraded, at most every 200 ms: asks the executor's Health; OK then restored (degraded() turns
  // false). Returns the error when the executor cannot come back (anything but UNAVAILABLE): fatal.
  absl::Status Probe();
  // While degraded: whether the restore timeout has passed (suspended requests end with RestoreFailed()).
  bool RestoreTimedOut(Clock::time_point now) const { return now - degraded_since_ >= restore_timeout_; }
  absl::Status RestoreFailed() const;

 private:
  Executor* executor_;
  Clock::duration restore_timeout_;
  std::function<void(bool)> on_health_;
  std::atomic<bool> degraded_{false};
  Clock::time_point last_probe_{};
  Clock::time_point degraded_since_{};
  absl::Status cause_;
};

}  // namespace layerskip::coordinator
