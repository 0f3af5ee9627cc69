// libFuzzer target: the chat template renderer (coordinator/api/chat/) over arbitrary template text. Parse must
// accept or refuse with INVALID_ARGUMENT; an accepted template renders two fixed conversations to a string
// or an INVALID_ARGUMENT, never a crash, a hang or an unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "coordinator/api/chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // templates are small; longer inputs only slow the search down
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = layerskip::coordinator::chat::ChatTemplate::Parse(text);
  if (!t.ok()) {
    if (t.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  static const nlohmann::ordered_json kConversations[] = {
      nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])"),
      nlohmann::ordered_json::parse(R"([{"role": "system", "content": " be brief "}, {"role": "user", "content": "a\nb"},
                                         {"role": "assistant", "content": "ok"}, {"role": "user", "content": "x", "name": "n"}])"),
  };
  for (const auto& messages : kConversations) {
    auto out = (*t)->Render(messages, true, "<s>", "</s>");
    if (!out.ok() && out.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  }
  return 0;
}
