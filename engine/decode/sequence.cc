#include "engine/decode/sequence.h"

#include <algorithm>

namespace layerskip {

const char* DecodeModeName(DecodeMode mode) {
  switch (mode) {
    case DecodeMode::kAutoregressive: return "autoregressive";
    case DecodeMode::kEarlyExit: return "early-exit";
    case DecodeMode::kSelfSpeculative: return "self-speculative";
  }
  return "?";
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "?";
}

void SpecStats::Count(int position, bool accepted_here) {
  if (static_cast<int>(drafted_per_position.size()) <= position) {
    drafted_per_position.resize(position + 1, 0);
    accepted_per_position.resize(position + 1, 0);
  }
  ++drafted_per_position[position];
  ++drafted;
  if (accepted_here) {
    ++accepted_per_position[position];
    ++accepted;
  }
}

std::pair<int, int> SpecStats::MostUsedChoice() const {
  std::pair<int, int> best{0, 0};
  int64_t most = 0;
  for (const auto& [choice, steps] : steps_by_choice)
    if (choice.second > 0 && steps > most) most = steps, best = choice;
  return best;
}

Sequence::Sequence(int slot, std::vector<int> prompt, GenerationParams params)
    : slot_(slot), prompt_(std::move(prompt)), pending_(prompt_), params_(std::move(params)), rng_(params_.seed) {
  if (params_.max_tokens <= 0) finish_ = FinishReason::kLength;
}

void Sequence::ForgetCache() {
  pending_ = prompt_;
  pending_.insert(pending_.end(), generated_.begin(), generated_.end());
}

bool Sequence::Append(int token, int context) {
  if (finished()) return false;
  generated_.push_back(token);
  pending_.assign(1, token);
  if (std::find(params_.eos_ids.begin(), params_.eos_ids.end(), token) != params_.eos_ids.end()) {
    finish_ = FinishReason::kStop;
  } else if (params_.stop_check && params_.stop_check(generated_)) {
    finish_ = FinishReason::kStop;
  } else if (remaining() <= 0 || num_tokens() >= context) {
    finish_ = FinishReason::kLength;
  }
  return !finished();
}

}  // namespace layerskip
