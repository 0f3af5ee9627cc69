#pragma once
// The deadline of one pipeline step, derived from measured step times: a step of `rows` rows gets
// floor + kSlack x (the slowest seconds-per-row among the last kWindow steps) x rows, capped by `cap`.
// Before any measurement a step gets `cap`. A stage that hangs mid-step fails the step at its deadline
// instead of at the fixed cap.
#include <deque>
#include <mutex>

#include "absl/time/time.h"

namespace layerskip::pipeline {

class StepDeadline {
 public:
  static constexpr int kWindow = 32;
  static constexpr double kSlack = 8.0;
  StepDeadline(absl::Duration floor, absl::Duration cap) : floor_(floor), cap_(std::max(floor, cap)) {}

  // The time budget of a step of `rows` rows (>= floor, <= cap).
  absl::Duration Budget(int rows) const;
  // A step of `rows` rows took `seconds` (successful steps only).
  void Record(double seconds, int rows);

 private:
  absl::Duration floor_, cap_;
  mutable std::mutex mu_;
  std::deque<double> per_row_;  // seconds per row, newest last
};

}  // namespace layerskip::pipeline
