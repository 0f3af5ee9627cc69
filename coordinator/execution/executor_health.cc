#include "coordinator/execution/executor_health.h"

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator {

void ExecutorHealth::Degrade(const absl::Status& cause) {
  degraded_ = true;
  degraded_since_ = last_probe_ = Clock::now();
  cause_ = cause;
  if (on_health_) on_health_(false);
}

absl::Status ExecutorHealth::Probe() {
  const Clock::time_point now = Clock::now();
  if (now - last_probe_ < std::chrono::milliseconds(200)) return absl::OkStatus();
  last_probe_ = now;
  if (absl::Status h = executor_->Health(); !h.ok()) {
    if (!absl::IsUnavailable(h)) return h;  // e.g. the workers refused the token at start: fatal
    return absl::OkStatus();
  }
  degraded_ = false;
  if (on_health_) on_health_(true);
  return absl::OkStatus();
}

absl::Status ExecutorHealth::RestoreFailed() const {
  return absl::UnavailableError(absl::StrCat("the engine lost a stage and it was not restored within ",
                                             std::chrono::duration<double>(restore_timeout_).count(),
                                             " s: ", cause_.message()));
}

}  // namespace layerskip::coordinator
