#pragma once
// Autoregressive and early-exit decoding: one token per sequence per step, and the token choice from a row
// of logits that every decoding mode shares.
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/backend.h"

namespace layerskip {

// Picks the next token from one row of logits [V]: argmax when greedy, else a draw from the sampling
// distribution with the sequence's own random generator.
int ChooseToken(const float* logits, int64_t V, Sequence& seq);

// One step for every unfinished sequence: its pending tokens (the whole prompt on the first step) run
// through layers [0, exit_layer) in one batch, and the exit head on each sequence's last row picks one
// token (greedy sequences: argmax on the device; sampling ones: from the logits on the host).
// exit_layer == L is autoregressive decoding; exit_layer < L is early exit (only layers [0, exit_layer)
// are cached). Different sequences may be at different positions and prompt lengths.
absl::Status AutoregressiveStep(Backend& backend, const std::vector<Sequence*>& seqs, int exit_layer);

}  // namespace layerskip
