#pragma once
// One sequence being generated: its prompt and output, sampling state, stop conditions and statistics.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/util/rng.h"
#include "kernels/sampling.h"

namespace layerskip {

enum class DecodeMode { kAutoregressive, kEarlyExit, kSelfSpeculative };
const char* DecodeModeName(DecodeMode mode);  // "autoregressive", "early-exit", "self-speculative"

enum class FinishReason { kNone, kLength, kStop, kCancelled };
const char* FinishReasonName(FinishReason reason);  // "", "length", "stop", "cancelled"

struct GenerationParams {
  int max_tokens = 128;
  SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<int> eos_ids;  // generation stops after emitting one of these
  // Optional stop check on the generated ids (e.g. stop strings): returns true to stop after the last id.
  std::function<bool(const std::vector<int>& generated)> stop_check;
};

// Speculation statistics of one sequence.
struct SpecStats {
  int64_t rounds = 0;
  int64_t drafted = 0;
  int64_t accepted = 0;
  std::vector<int64_t> drafted_per_position;   // [i]: rounds that drafted a token at draft position i
  std::vector<int64_t> accepted_per_position;  // [i]: rounds whose draft at position i was accepted
  double draft_seconds = 0.0;
  double verify_seconds = 0.0;
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  // Tokens emitted per round (accepted drafts + the verifier's token).
  double tokens_per_round() const { return rounds ? static_cast<double>(accepted + rounds) / rounds : 0.0; }
  void Count(int position, bool accepted_here);

  // Automatic speculation: steps per (E, d) chosen (d = 0, E = 0: an autoregressive step) and the
  // predicted speedup of the last choice.
  std::map<std::pair<int, int>, int64_t> steps_by_choice;
  double predicted_speedup = 0.0;
  void RecordChoice(int exit_layer, int d, double predicted) {
    ++steps_by_choice[{exit_layer, d}];
    predicted_speedup = predicted;
  }
  // The (E, d) of most speculative rounds ({0, 0} when every step was autoregressive).
  std::pair<int, int> MostUsedChoice() const;
};

class Sequence {
 public:
  Sequence(int slot, std::vector<int> prompt, GenerationParams params);

  int slot() const { return slot_; }
  const std::vector<int>& prompt() const { return prompt_; }
  const std::vector<int>& generated() const { return generated_; }
  const GenerationParams& params() const { return params_; }
  Rng& rng() { return rng_; }
  bool finished() const { return finish_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_; }
  int num_tokens() const { return static_cast<int>(prompt_.size() + generated_.size()); }
  int remaining() const { return params_.max_tokens - static_cast<int>(generated_.size()); }

  // Tokens not yet in the KV cache: the prompt before the first step, then the last emitted token.
  const std::vector<int>& pending() const { return pending_; }
  // Position of pending()[0]: the number of cached positions.
  int cached() const { return num_tokens() - static_cast<int>(pending_.size()); }

  // Emits one token; returns false once the sequence is finished (eos, max_tokens, context, stop check).
  // `context` is the most positions the sequence may occupy. The emitted token becomes pending.
  bool Append(int token, int context);
  // Called after a step has cached the pending tokens (before Append of the next token).
  void MarkPendingCached() { pending_.clear(); }
  // The KV cache of the slot is gone (a pipeline stage restarted): every token, prompt and generated,
  // becomes pending, so the next step prefills them all and decoding continues where it stopped.
  void ForgetCache();
  void Finish(FinishReason reason) { finish_ = reason; }

  SpecStats& stats() { return stats_; }
  const SpecStats& stats() const { return stats_; }

  // Adaptive speculation state (self-speculative `auto`): the current draft limit.
  int draft_limit = 0;

 private:
  int slot_;
  std::vector<int> prompt_, generated_, pending_;
  GenerationParams params_;
  Rng rng_;
  FinishReason finish_ = FinishReason::kNone;
  SpecStats stats_;
};

}  // namespace layerskip
