#include "coordinator/execution/pipeline/step_deadline.h"

#include <algorithm>

namespace layerskip::pipeline {

absl::Duration StepDeadline::Budget(int rows) const {
  std::lock_guard<std::mutex> l(mu_);
  if (per_row_.empty()) return cap_;
  const double slowest = *std::max_element(per_row_.begin(), per_row_.end());
  return std::min(cap_, floor_ + absl::Seconds(kSlack * slowest * std::max(1, rows)));
}

void StepDeadline::Record(double seconds, int rows) {
  std::lock_guard<std::mutex> l(mu_);
  per_row_.push_back(std::max(0.0, seconds) / std::max(1, rows));
  if (per_row_.size() > static_cast<size_t>(kWindow)) per_row_.pop_front();
}

}  // namespace layerskip::pipeline
