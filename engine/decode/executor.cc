#include "engine/decode/executor.h"

#include "engine/decode/self_speculative.h"
#include "engine/decode/step.h"

namespace layerskip {

LocalExecutor::LocalExecutor(const LoadedModel* model, int num_slots)
    : model_(model),
      cache_(model->weights->config, 0, model->weights->config.num_hidden_layers, num_slots, model->context) {}

int LocalExecutor::context_length() const { return ContextLength(*model_->model, cache_); }

absl::Status LocalExecutor::Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  const Model& m = *model_->model;
  switch (options.mode) {
    case DecodeMode::kAutoregressive:
      return AutoregressiveStep(m, cache_, seqs, m.num_layers());
    case DecodeMode::kEarlyExit:
      return AutoregressiveStep(m, cache_, seqs, options.exit_layer);
    case DecodeMode::kSelfSpeculative: {
      SpeculationConfig spec = options.speculation;
      spec.exit_layer = options.exit_layer;
      return SelfSpeculativeRound(m, cache_, seqs, spec);
    }
  }
  return absl::InvalidArgumentError("unknown decode mode");
}

}  // namespace layerskip
