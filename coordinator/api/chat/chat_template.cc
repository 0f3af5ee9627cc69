#include "coordinator/api/chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "coordinator/api/chat/jinja_parser.h"
#include "coordinator/api/chat/jinja_render.h"

namespace layerskip::coordinator::chat {

struct TemplateNode;  // jinja_ast.h

ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::Parse(std::string_view source) {
  absl::StatusOr<std::unique_ptr<TemplateNode>> root = ParseJinja(source);
  if (!root.ok()) return root.status();
  std::shared_ptr<ChatTemplate> t(new ChatTemplate());
  t->root_ = *std::move(root);
  return std::shared_ptr<const ChatTemplate>(std::move(t));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                                 const std::string& bos_token, const std::string& eos_token) const {
  Value globals = Value::object();
  globals["messages"] = messages;
  globals["add_generation_prompt"] = add_generation_prompt;
  globals["bos_token"] = bos_token;
  globals["eos_token"] = eos_token;
  globals["tools"] = nullptr;      // apply_chat_template passes these as None when not given
  globals["documents"] = nullptr;
  return RenderJinja(*root_, globals);
}

namespace {

// A special token in tokenizer_config.json: a string or {"content": string, ...}.
std::string TokenText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

absl::StatusOr<ChatTemplateConfig> ReadChatTemplateConfig(const std::string& model_dir) {
  ChatTemplateConfig c;
  const std::filesystem::path path = std::filesystem::path(model_dir) / "tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return c;
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  if (auto it = j.find("bos_token"); it != j.end()) c.bos_token = TokenText(*it);
  if (auto it = j.find("eos_token"); it != j.end()) c.eos_token = TokenText(*it);
  auto t = j.find("chat_template");
  if (t == j.end() || t->is_null()) return c;
  if (t->is_string()) {
    c.source = t->get<std::string>();
  } else if (t->is_array()) {  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
    for (const nlohmann::json& e : *t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        c.source = e["template"].get<std::string>();
    if (c.source.empty()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": chat_template has no \"default\" entry"));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": chat_template must be a string or a list"));
  }
  return c;
}

}  // namespace layerskip::coordinator::chat
