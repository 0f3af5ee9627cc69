#include "engine/decode/executor.h"

#include "engine/decode/step.h"

namespace layerskip {

LocalExecutor::LocalExecutor(const LoadedModel* model, int num_slots)
    : model_(model),
      cache_(model->weights->config, 0, model->weights->config.num_hidden_layers, num_slots, model->context) {}

int LocalExecutor::context_length() const { return ContextLength(*model_->model, cache_); }

absl::Status LocalExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  return DecodeStep(*model_->model, cache_, seqs, options);
}

}  // namespace layerskip
