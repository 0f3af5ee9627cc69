#pragma once
// LayerSkip self-speculative decoding: draft with layers [0, E) and the shared exit head, verify the drafts
// of every sequence in one pass over layers [E, L) that starts from the saved layer-E inputs, accept the
// longest agreeing prefix plus one verifier token, and roll every layer's KV cache back.
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/backend.h"

namespace layerskip {

// How a self-speculative round drafts. The exit layer E is not here: it is DecodeOptions::exit_layer (or
// the policy's choice, or a pipeline's first stage end), passed beside this config.
struct SpeculationConfig {
  int speculations = 4;  // d: most tokens drafted per round (0: autoregressive); the start value when adaptive
  // Adaptive (`--speculations auto`): drafting stops early when the draft's probability of its own token
  // falls below confidence_threshold, and each sequence's limit moves with what it sees accepted: +1 after
  // a round whose every draft was accepted, back to (accepted + 1) after a rejection, within
  // [1, max_speculations].
  bool adaptive = false;
  float confidence_threshold = 0.4f;
  int max_speculations = 12;
};

// InvalidArgument naming the field when E or d is out of range for a model of num_layers layers.
absl::Status ValidateSpeculation(const SpeculationConfig& config, int exit_layer, int num_layers);

// One round at exit layer E for every unfinished sequence in `seqs` (each with its own slot, position and
// sampling parameters). Greedy sequences get exactly the tokens of greedy autoregressive decoding; sampling
// sequences use speculative sampling, so their output distribution is the full model's. Never emits a
// token past a sequence's stop condition. Updates each sequence's SpecStats.
absl::Status SelfSpeculativeRound(Backend& backend, const std::vector<Sequence*>& seqs, int exit_layer,
                                  const SpeculationConfig& config);

}  // namespace layerskip
