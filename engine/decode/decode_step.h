#pragma once
// A decoding step and its options: what every executor runs per scheduling step for a batch of sequences
// sharing one backend. DecodeOptions (mode, exit layer, speculation, automatic speculation), their one
// validation, DecodeStep (one token each, or one self-speculative round) and AutomaticStep.
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/cost_model.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/sequence.h"
#include "engine/decode/speculation_policy.h"
#include "engine/runtime/backend.h"

namespace layerskip {

struct DecodeOptions {
  DecodeMode mode = DecodeMode::kAutoregressive;
  // E, the one exit layer: early-exit decoding stops after layer E-1; self-speculative decoding drafts with
  // layers [0, E). Checked once by ValidateDecodeOptions at the edge (flags, requests).
  int exit_layer = 0;
  SpeculationConfig speculation;  // self-speculative mode: d, adaptive drafting
  // Automatic speculation (self-speculative mode, `--exit-layer auto` / `--speculations auto`): before each
  // step a SpeculationPolicy picks E (auto_exit_layer; else exit_layer) and d (auto_speculations; else
  // speculation.speculations) from `cost`, or an autoregressive step when speculation is predicted not to pay.
  bool auto_exit_layer = false;
  bool auto_speculations = false;
  std::shared_ptr<const CostModel> cost;
  PolicyOptions policy;  // its exit_layer / speculations are filled from the fields above
  bool automatic() const { return mode == DecodeMode::kSelfSpeculative && (auto_exit_layer || auto_speculations); }
};

// InvalidArgument naming the field for a bad mode / exit layer / speculation setting.
absl::Status ValidateDecodeOptions(const DecodeOptions& options, int num_layers);

// One step of `options.mode` for the unfinished sequences in `seqs`: one token each (autoregressive, early
// exit) or one self-speculative round. GenerateBatch and LocalExecutor both step through here.
absl::Status DecodeStep(Backend& backend, const std::vector<Sequence*>& seqs, const DecodeOptions& options);

// The policy of automatic speculation for `options` (which must be automatic()).
SpeculationPolicy MakePolicy(const DecodeOptions& options);
// One automatic step: policy.Choose(unfinished sequences), then that autoregressive step or round; records
// the choice and the accept counts in each sequence's SpecStats and feeds the counts back to the policy.
absl::Status AutomaticStep(Backend& backend, const std::vector<Sequence*>& seqs, const DecodeOptions& options,
                           SpeculationPolicy& policy);

}  // namespace layerskip
