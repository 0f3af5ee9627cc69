#pragma once
// The phases of one self-speculative round, usable on their own: drafting through layers [0, E) with the
// exit head, the verification batch layout, and acceptance. SelfSpeculativeRound (one process) and the
// pipeline (draft on the first worker, verify on the later ones, accept on the coordinator) call the same
// code, so both produce the same tokens.
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model.h"
#include "kernels/sampling.h"

namespace layerskip {

// Per-sequence state of the drafting phase. Independent of Sequence so that a pipeline worker, which has
// only the slot, the pending tokens and the sampling parameters, can draft too.
struct DraftState {
  int slot = 0;
  int max_drafts = 0;                 // k_max for this round
  SamplingParams sampling;       // greedy when temperature <= 0
  std::vector<int> eos_ids;           // drafting stops after drafting one of these
  std::function<double()> uniform;    // sampling only: the next uniform draw of the sequence's generator
  std::vector<int> input;             // tokens to run through [0, E) in the next drafting pass
  std::vector<float> exit_rows;       // [rows, D]: hidden states entering layer E (pending tokens, then drafts)
  std::vector<int> tokens;            // the drafts
  std::vector<std::vector<float>> q;  // sampling only: the draft distribution of each draft [V]
  bool drafting = true;
  int rows(int D) const { return static_cast<int>(exit_rows.size() / D); }
};

// Drafting: passes over [0, E) (E = cfg.exit_layer) until every state has its drafts and the last draft
// has run through [0, E). Each pass appends K/V to layers [0, E) of the states' slots; the first pass
// starts at each slot's length in layer 0.
absl::Status DraftAll(const Model& model, KvCache& cache, std::vector<DraftState>& drafts,
                      const SpeculationConfig& cfg);

// Greedy verifier targets of one sequence: targets[i] = argmax of verifier logits row i, i in [0, k].
struct VerifierRows {
  const float* logits = nullptr;  // [k+1, V]; required for sampling (and used for greedy if targets is empty)
  std::vector<int> targets;       // [k+1]; greedy only
};

// Accepts the drafts `tokens` (with draft distributions q when sampling) against the verifier's rows and
// emits tokens into `seq` (stopping at its stop conditions). Greedy: the longest agreeing prefix, then the
// verifier's token. Sampling: speculative sampling with the sequence's generator. Counts the per-position
// statistics. Returns the number of accepted drafts.
int AcceptDrafts(Sequence& seq, const std::vector<int>& tokens, const std::vector<std::vector<float>>& q,
                 const VerifierRows& verifier, int64_t V, int context);

// The round's draft limit of a sequence: min(limit, tokens left - 1, context left - 1), at least 0. Also
// initialises seq.draft_limit for adaptive mode.
int MaxDrafts(Sequence& seq, const SpeculationConfig& cfg, int context);

// After AcceptDrafts: adaptive draft-limit update.
void UpdateDraftLimit(Sequence& seq, const SpeculationConfig& cfg, int drafted, int accepted);

// Number of leading drafts equal to the greedy targets (what the last pipeline stage reports).
int CountAgreeing(const std::vector<int>& tokens, const std::vector<int>& targets);

}  // namespace layerskip
