#pragma once
// A checkpoint's chat template (tokenizer_config.json `chat_template`, Jinja2) rendered the way Hugging Face
// transformers' apply_chat_template renders it: trim_blocks and lstrip_blocks on, the variables `messages`,
// `bos_token`, `eos_token`, `add_generation_prompt`, and `raise_exception(msg)`. The Jinja subset is the one
// jinja_parser.h documents; anything else is a clear error at Parse, never a wrong prompt.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace layerskip::coordinator::chat {

struct TemplateNode;

class ChatTemplate {
 public:
  // Parses `source`; INVALID_ARGUMENT naming the line and the construct that is not supported.
  static absl::StatusOr<std::shared_ptr<const ChatTemplate>> Parse(std::string_view source);
  ~ChatTemplate();

  // `messages` is a JSON array (keys in their order) of {"role": ..., "content": ...}. A template's raise_exception(msg) and
  // run-time errors (a missing key used as a string, a type error) come back as INVALID_ARGUMENT.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                     const std::string& bos_token, const std::string& eos_token) const;

 private:
  ChatTemplate() = default;
  std::unique_ptr<TemplateNode> root_;
};

// What tokenizer_config.json says about chat: the template (a string, or the entry named "default" of a
// list of {name, template}) and the special tokens' text. `source` is empty when there is no template.
struct ChatTemplateConfig {
  std::string source;
  std::string bos_token, eos_token;
};
// Reads DIR/tokenizer_config.json; a missing file gives an empty config.
absl::StatusOr<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& model_dir);

}  // namespace layerskip::coordinator::chat
