#pragma once
// Decoding steps over a batch of sequences sharing one model and KV cache.
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model.h"

namespace layerskip {

// The most positions a sequence may occupy with this model and cache.
int ContextLength(const Model& model, const KvCache& cache);

// Picks the next token from one row of logits [V]: argmax when greedy, else a draw from the sampling
// distribution with the sequence's own random generator.
int ChooseToken(const float* logits, int64_t V, Sequence& seq);

// One step for every unfinished sequence: its pending tokens (the whole prompt on the first step) run
// through layers [0, exit_layer) in one batch, and the exit head on each sequence's last row picks one
// token. exit_layer == L is autoregressive decoding; exit_layer < L is early exit (only layers
// [0, exit_layer) are cached). Different sequences may be at different positions and prompt lengths.
absl::Status AutoregressiveStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                                int exit_layer);

}  // namespace layerskip
