#include "engine/decode/executor.h"

#include "engine/decode/step.h"

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

LocalExecutor::LocalExecutor(const LoadedModel* model, int num_slots)
    : model_(model),
      cache_(model->weights->config, 0, model->weights->config.num_hidden_layers, num_slots, model->context) {}

int LocalExecutor::context_length() const { return ContextLength(*model_->model, cache_); }

absl::Status LocalExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  return DecodeStep(*model_->model, cache_, seqs, options);
}

}  // namespace layerskip
