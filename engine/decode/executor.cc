#include "engine/decode/executor.h"


namespace layerskip {

absl::StatusOr<uint64_t> Executor::StartStep(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  const uint64_t id = next_step_++;
  finished_[id] = Step(seqs, options);
  return id;
}

absl::Status Executor::FinishStep(uint64_t id) {
  auto it = finished_.find(id);
  if (it == finished_.end()) return absl::InvalidArgumentError("FinishStep: no such step in flight");
  absl::Status s = std::move(it->second);
  finished_.erase(it);
  return s;
}

absl::Status LocalExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  return DecodeStep(*backend_, seqs, options);
}

}  // namespace layerskip
