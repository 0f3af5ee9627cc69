#pragma once
// The bookkeeping of a self-speculative round, in one place: drafting through layers [0, E) with the draft
// head, the verification batch layout and its head rows, the verifier heads, acceptance, and the rollback
// length. SelfSpeculativeRound (one process), the pipeline worker (worker/shard.cc: drafts on the first
// stage, verifies on the later ones) and the pipeline executor (coordinator/pipeline/pipeline_round.cc:
// accepts) call this code, on any Backend, so all produce the same tokens.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/backend.h"
#include "kernels/sampling.h"

namespace layerskip {

// Per-sequence state of the drafting phase. Independent of Sequence so that a pipeline worker, which has
// only the slot, the pending tokens and the sampling parameters, can draft too.
struct DraftState {
  int slot = 0;
  int prompt_tokens = 0;              // the sequence's prompt length: the role of each row (TokenRole)
  int max_drafts = 0;                 // k_max for this round
  SamplingParams sampling;       // greedy when temperature <= 0
  std::vector<int> eos_ids;           // drafting stops after drafting one of these
  std::function<double()> uniform;    // sampling only: the next uniform draw of the sequence's generator
  std::vector<int> input;             // tokens to run through [0, E) in the next drafting pass
  int rows = 0;                       // rows entering layer E so far (pending tokens, then drafts)
  std::vector<int> tokens;            // the drafts
  std::vector<std::vector<float>> q;  // sampling only: the draft distribution of each draft [V]
  bool drafting = true;
};

// Drafting: passes over [0, E) until every state has its drafts and the last draft has run through [0, E).
// Each pass appends K/V to layers [0, E) of the states' slots, starting at each slot's length in layer 0.
// Greedy drafts take the draft head's argmax on the device; sampling (and adaptive confidence) bring the
// draft head's logits to the host. On success *exit_rows holds the hidden states entering layer E of every
// state, state after state: [sum of rows, D] on the backend's device.
absl::Status DraftAll(Backend& backend, std::vector<DraftState>& drafts, int exit_layer, const SpeculationConfig& cfg,
                      std::unique_ptr<Activations>* exit_rows);

// One sequence's part of a verification batch: `rows` rows (its pending tokens, then its drafts) at
// positions cached, cached + 1, ...; its head rows are its last drafts + 1 rows.
struct VerifySpan {
  int slot = 0;
  int cached = 0;
  int rows = 0;
  int drafts = 0;
  int prompt_tokens = 0;  // the sequence's prompt length: the role of each row (TokenRole)
};

// The verification batch of a round: the spans' tokens in order, and the verifier's head rows.
struct VerifyLayout {
  TokenBatch batch;
  std::vector<int> head_rows;   // per span, its drafts + 1 rows, span after span
  std::vector<int> head_first;  // per span: index of its first head row in head_rows
};
// InvalidArgument when a span has fewer rows than drafts + 1.
absl::StatusOr<VerifyLayout> LayoutVerification(const std::vector<VerifySpan>& spans);

// The verifier's output on x (after layer L-1) for a layout: targets (argmax on the device) for spans with
// want_targets, logits rows to the host for spans with want_logits.
struct VerifierHeads {
  std::vector<std::vector<int>> targets;   // [span][drafts + 1]; empty when not wanted
  std::vector<std::vector<float>> logits;  // [span][(drafts + 1) * V]; empty when not wanted
};
absl::StatusOr<VerifierHeads> RunVerifierHeads(Backend& backend, const Activations& x, const VerifyLayout& layout,
                                               const std::vector<bool>& want_targets,
                                               const std::vector<bool>& want_logits);

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

// The end of a round for one sequence, wherever it ran: the pending tokens are cached, AcceptDrafts, the
// adaptive limit update and the round count. Returns the number of accepted drafts.
int FinishRound(Sequence& seq, const std::vector<int>& tokens, const std::vector<std::vector<float>>& q,
                const VerifierRows& verifier, int64_t V, int context, const SpeculationConfig& cfg);

// The rollback after a round: every layer of the sequence's slot keeps this many positions (the emitted
// tokens except the last, which is pending).
inline int AcceptedLength(const Sequence& seq) { return seq.cached(); }

// The round's draft limit of a sequence: min(limit, tokens left - 1, context left - 1), at least 0. Also
// initialises seq.draft_limit for adaptive mode.
int MaxDrafts(Sequence& seq, const SpeculationConfig& cfg, int context);

// After AcceptDrafts: adaptive draft-limit update.
void UpdateDraftLimit(Sequence& seq, const SpeculationConfig& cfg, int drafted, int accepted);

// Number of leading drafts equal to the greedy targets (what the last pipeline stage reports).
int CountAgreeing(const std::vector<int>& tokens, const std::vector<int>& targets);

}  // namespace layerskip
