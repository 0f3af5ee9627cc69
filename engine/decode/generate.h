#pragma once
// Runs whole requests to completion on one model and KV cache: the call behind `layerskip generate`,
// `layerskip bench` and the tests. The service's scheduler calls the step functions directly instead.
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/decode/cost_model.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/speculation_policy.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model.h"

namespace layerskip {

struct DecodeOptions {
  DecodeMode mode = DecodeMode::kAutoregressive;
  int exit_layer = 0;  // early-exit and self-speculative modes
  SpeculationConfig speculation;  // self-speculative mode (its exit_layer is set from exit_layer)
  // Automatic speculation (self-speculative mode, `--exit-layer auto` / `--speculations auto`): before each
  // step a SpeculationPolicy picks E (auto_exit_layer; else exit_layer) and d (auto_speculations; else
  // speculation.speculations) from `cost`, or an autoregressive step when speculation is predicted not to pay.
  bool auto_exit_layer = false;
  bool auto_speculations = false;
  std::shared_ptr<const CostModel> cost;
  PolicyOptions policy;  // its exit_layer / speculations are filled from the fields above
  bool automatic() const { return mode == DecodeMode::kSelfSpeculative && (auto_exit_layer || auto_speculations); }
};

struct GenerateResult {
  std::vector<int> ids;  // generated ids only
  FinishReason finish_reason = FinishReason::kNone;
  SpecStats spec;
  double prefill_seconds = 0.0;  // the first step: prompt processing and the first token
  double decode_seconds = 0.0;   // every later step
};

// InvalidArgument naming the field for a bad mode / exit layer / speculation setting.
absl::Status ValidateDecodeOptions(const DecodeOptions& options, int num_layers);

// One step of `options.mode` for the unfinished sequences in `seqs`: one token each (autoregressive, early
// exit) or one self-speculative round. GenerateBatch and LocalExecutor both step through here.
absl::Status DecodeStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                        const DecodeOptions& options);

// The policy of automatic speculation for `options` (which must be automatic()).
SpeculationPolicy MakePolicy(const DecodeOptions& options);
// One automatic step: policy.Choose(unfinished sequences), then that autoregressive step or round; records
// the choice and the accept counts in each sequence's SpecStats and feeds the counts back to the policy.
absl::Status AutomaticStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                           const DecodeOptions& options, SpeculationPolicy& policy);

// Generates for each prompt in its own slot (slot i for prompts[i]; the cache needs prompts.size() slots),
// all in one batch. Prompts must be non-empty, in the vocabulary and shorter than the context.
absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(const Model& model, KvCache& cache,
                                                          const std::vector<std::vector<int>>& prompts,
                                                          const std::vector<GenerationParams>& params,
                                                          const DecodeOptions& options);

}  // namespace layerskip
