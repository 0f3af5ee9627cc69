#pragma once
// Which running sequences go into the next round, and in which groups. One group = one Executor::Step, so
// its sequences share DecodeOptions. Sequences still decoding always run (one or 1 + d rows each); new
// sequences (their first step prefills the whole prompt) join while the round's token budget allows, so
// prefill is interleaved with decoding rounds instead of stalling them. Speculation policy: in a round of
// at least `speculation_batch_threshold` sequences, self-speculative sequences decode autoregressively
// (drafting stops paying once the batch alone keeps the cores busy; docs/service.md has the measurement).
#include <vector>

#include "coordinator/scheduling/request.h"
#include "engine/decode/generate.h"

namespace layerskip::coordinator {

struct MicroBatchLimits {
  int max_batch_size = 32;         // sequences per round
  int max_batched_tokens = 2048;   // rows per round: prompt tokens of prefills + 1 (+ d drafts) per decode
  int speculation_batch_threshold = 0;  // 0: always speculate
};

struct StepGroup {
  DecodeOptions options;
  std::vector<Request*> requests;
  bool speculation_off = false;  // self-speculative requests stepped autoregressively this round
  int policy_exit_layer = 0;     // automatic speculation chose a round at this E (its accepts feed the policy)
  // Automatic speculation's step to time against the prediction (policy_d >= 0; d = 0: autoregressive):
  // its E, d, batch and start. -1: not timed (a prompt in the step, or steps that overlap in a pipeline).
  int policy_d = -1, policy_timed_exit_layer = 0, policy_batch = 0;
  Clock::time_point policy_started{};
};

class MicroBatchScheduler {
 public:
  explicit MicroBatchScheduler(MicroBatchLimits limits) : limits_(limits) {}
  const MicroBatchLimits& limits() const { return limits_; }

  // Groups for the next round from `running` (admitted, unfinished, in admission order). Never empty when
  // `running` is not: a prefill larger than the budget runs alone.
  std::vector<StepGroup> Schedule(const std::vector<Request*>& running) const;

  // Rows one request adds to a round.
  static int RoundTokens(const Request& r, bool speculate);

 private:
  MicroBatchLimits limits_;
};

}  // namespace layerskip::coordinator
