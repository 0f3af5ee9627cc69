#pragma once
// What a request's generated ids become for the client: incremental detokenisation and stop strings, shared
// by the coordinator's engine loop (streaming) and `layerskip generate` (one completion at the end).
// A stop string ends generation (StopCheck, for GenerationParams::stop_check) and the text ends before the
// first one found; while streaming, a tail that could be the start of a stop string is held back.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace layerskip {

// The stop strings of one request (empty ones are ignored).
class StopStrings {
 public:
  StopStrings() = default;
  explicit StopStrings(std::vector<std::string> stops);

  bool empty() const { return longest_ == 0; }
  // Where the text ends: the position of the earliest stop string in `text`, or text.size().
  size_t CutAt(std::string_view text) const;
  // Whether `text` contains a stop string.
  bool Found(std::string_view text) const { return CutAt(text) < text.size(); }
  // The bytes of `text` that may be sent before generation ends: all but a tail of (longest - 1) bytes,
  // backed off to a UTF-8 character boundary, never below `sent`.
  size_t SafeLength(std::string_view text, size_t sent) const;

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
};

// GenerationParams::stop_check for `stops`: true once the decoded generated ids contain one of them.
// `tokenizer` outlives the check.
std::function<bool(const std::vector<int>&)> MakeStopCheck(const Tokenizer* tokenizer, const StopStrings& stops);

// One sequence's output: feed its newly generated ids step by step (or all at once at the end) and send
// what Feed returns; the concatenation of the returns is the completion's text, cut at the first stop string.
class OutputProcessor {
 public:
  // `tokenizer` (outlives this) may be null: no text, only ids.
  OutputProcessor(const Tokenizer* tokenizer, StopStrings stops);

  // Adds the ids generated since the last call; `finished`: the sequence has ended (flush held-back bytes,
  // cut at the first stop string). Returns the text that may be sent now (possibly "").
  std::string Feed(const std::vector<int>& ids, bool finished);
  // Everything decoded so far (may run past a stop string; not what the client sees).
  const std::string& decoded() const { return text_; }

 private:
  const Tokenizer* tokenizer_;
  StopStrings stops_;
  std::unique_ptr<IncrementalDecoder> decoder_;
  std::string text_;  // decoded text so far
  size_t sent_ = 0;   // bytes of text_ already returned
};

}  // namespace layerskip
