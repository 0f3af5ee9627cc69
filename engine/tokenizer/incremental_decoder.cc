// IncrementalDecoder (see tokenizer.h): decodes the window ids_[prefix_offset_:] and emits what it adds
// to the already emitted window text ids_[prefix_offset_:read_offset_], unless it ends in U+FFFD.
#include "engine/tokenizer/tokenizer.h"

namespace layerskip {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

bool EndsWithReplacement(const std::string& s) {
  return s.size() >= kReplacementChar.size() && s.compare(s.size() - 3, 3, kReplacementChar) == 0;
}

}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::Feed(int id) {
  ids_.push_back(id);
  const std::vector<int> window(ids_.begin() + prefix_offset_, ids_.end());
  const std::vector<int> done(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  const std::string prefix_text = tokenizer_.Decode(done, skip_special_tokens_);
  const std::string text = tokenizer_.Decode(window, skip_special_tokens_);
  if (text.size() <= prefix_text.size() || EndsWithReplacement(text)) return "";
  std::string added = text.substr(prefix_text.size());
  // The ids before read_offset_ are no longer needed as context beyond this window.
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
  return added;
}

std::string IncrementalDecoder::Flush() {
  const std::vector<int> window(ids_.begin() + prefix_offset_, ids_.end());
  const std::vector<int> done(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  const std::string prefix_text = tokenizer_.Decode(done, skip_special_tokens_);
  const std::string text = tokenizer_.Decode(window, skip_special_tokens_);
  ids_.clear();
  prefix_offset_ = read_offset_ = 0;
  return text.size() > prefix_text.size() ? text.substr(prefix_text.size()) : "";
}

}  // namespace layerskip
