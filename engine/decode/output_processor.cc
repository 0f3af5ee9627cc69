#include "engine/decode/output_processor.h"

#include <algorithm>

namespace layerskip {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) longest_ = std::max(longest_, s.size());
}

size_t StopStrings::CutAt(std::string_view text) const {
  size_t limit = text.size();
  for (const std::string& s : stops_) {
    const size_t at = s.empty() ? std::string_view::npos : text.find(s);
    if (at != std::string_view::npos) limit = std::min(limit, at);
  }
  return limit;
}

size_t StopStrings::SafeLength(std::string_view text, size_t sent) const {
  const size_t hold = longest_;
  size_t limit = hold > 1 ? (text.size() > hold - 1 ? text.size() - (hold - 1) : 0) : text.size();
  while (limit > sent && limit < text.size() && (static_cast<unsigned char>(text[limit]) & 0xC0) == 0x80) --limit;
  return limit;
}

std::function<bool(const std::vector<int>&)> MakeStopCheck(const Tokenizer* tokenizer, const StopStrings& stops) {
  return [tokenizer, stops](const std::vector<int>& ids) {
    return stops.Found(tokenizer->Decode(ids, /*skip_special_tokens=*/true));
  };
}

OutputProcessor::OutputProcessor(const Tokenizer* tokenizer, StopStrings stops)
    : tokenizer_(tokenizer), stops_(std::move(stops)) {
  if (tokenizer_) decoder_ = std::make_unique<IncrementalDecoder>(*tokenizer_, /*skip_special_tokens=*/true);
}

std::string OutputProcessor::Feed(const std::vector<int>& ids, bool finished) {
  if (!decoder_) return "";
  for (int id : ids) text_ += decoder_->Feed(id);
  size_t limit;
  if (finished) {
    text_ += decoder_->Flush();
    limit = stops_.CutAt(text_);  // the text ends before the first stop string
  } else {
    limit = stops_.SafeLength(text_, sent_);  // hold back what could start a stop string
  }
  if (limit <= sent_) return "";
  std::string delta = text_.substr(sent_, limit - sent_);
  sent_ = limit;
  return delta;
}

}  // namespace layerskip
