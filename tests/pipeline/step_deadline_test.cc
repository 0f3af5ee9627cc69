// StepDeadline: a step's budget from the measured seconds per row (floor + 8 x slowest x rows, capped).
#include <gtest/gtest.h>

#include "coordinator/execution/pipeline/step_deadline.h"

namespace layerskip::pipeline {
namespace {

TEST(StepDeadline, CapBeforeAnyMeasurement) {
  StepDeadline d(absl::Seconds(2), absl::Seconds(60));
  EXPECT_EQ(d.Budget(1), absl::Seconds(60));
  EXPECT_EQ(d.Budget(100000), absl::Seconds(60));
}

TEST(StepDeadline, FloorPlusSlackTimesTheSlowestRecentRowTime) {
  StepDeadline d(absl::Seconds(2), absl::Seconds(60));
  d.Record(0.010, 10);  // 1 ms per row
  d.Record(0.040, 20);  // 2 ms per row: the slowest
  d.Record(0.005, 5);
  EXPECT_EQ(d.Budget(100), absl::Seconds(2) + absl::Seconds(StepDeadline::kSlack * 0.002 * 100));
  EXPECT_EQ(d.Budget(1000000), absl::Seconds(60));  // capped
  EXPECT_EQ(d.Budget(0), absl::Seconds(2) + absl::Seconds(StepDeadline::kSlack * 0.002));  // at least one row
}

TEST(StepDeadline, OldMeasurementsLeaveTheWindow) {
  StepDeadline d(absl::Seconds(1), absl::Seconds(60));
  d.Record(1.0, 1);  // one very slow step
  for (int i = 0; i < StepDeadline::kWindow; ++i) d.Record(0.001, 1);
  EXPECT_EQ(d.Budget(1), absl::Seconds(1) + absl::Seconds(StepDeadline::kSlack * 0.001));
}

TEST(StepDeadline, CapBelowTheFloorIsRaisedToIt) {
  StepDeadline d(absl::Seconds(10), absl::Seconds(1));
  EXPECT_EQ(d.Budget(1), absl::Seconds(10));
}

}  // namespace
}  // namespace layerskip::pipeline
