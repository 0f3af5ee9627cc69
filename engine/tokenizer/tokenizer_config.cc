// Reads tokenizer_config.json / generation_config.json / config.json (see tokenizer_config.h).
#include "engine/tokenizer/tokenizer_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip::tokenizer_internal {

using nlohmann::json;

absl::StatusOr<json> ReadJsonFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  return j;
}

namespace {

// A special token in tokenizer_config.json: "text" or {"content": "text", ...}.
absl::StatusOr<std::optional<std::string>> TokenString(const json& config, const char* field,
                                                       const std::string& file) {
  if (!config.contains(field) || config[field].is_null()) return std::optional<std::string>();
  const json& v = config[field];
  if (v.is_string()) return std::optional<std::string>(v.get<std::string>());
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return std::optional<std::string>(v["content"].get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(file, ": \"", field, "\" must be a string or {\"content\": ...}"));
}

absl::StatusOr<std::optional<bool>> OptionalBool(const json& config, const char* field, const std::string& file) {
  if (!config.contains(field) || config[field].is_null()) return std::optional<bool>();
  if (!config[field].is_boolean()) return absl::InvalidArgumentError(absl::StrCat(file, ": \"", field, "\" must be a boolean"));
  return std::optional<bool>(config[field].get<bool>());
}

// bos_token_id / eos_token_id of generation_config.json or config.json, when not already known.
absl::Status ReadTokenIds(const std::filesystem::path& path, TokenizerConfig* config) {
  if (!std::filesystem::exists(path)) return absl::OkStatus();
  LS_ASSIGN_OR_RETURN(const json j, ReadJsonFile(path));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  if (!config->bos_token_id && j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) {
    config->bos_token_id = j["bos_token_id"].get<int>();
  }
  if (config->eos_token_ids.empty() && j.contains("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) config->eos_token_ids.push_back(e.get<int>());
    if (e.is_array()) {
      for (const json& id : e) {
        if (!id.is_number_integer()) {
          return absl::InvalidArgumentError(absl::StrCat(path.string(), ": \"eos_token_id\" must hold integers"));
        }
        config->eos_token_ids.push_back(id.get<int>());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::filesystem::path& dir) {
  TokenizerConfig config;
  const std::filesystem::path path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(path)) {
    LS_ASSIGN_OR_RETURN(const json j, ReadJsonFile(path));
    const std::string file = path.string();
    if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
    LS_ASSIGN_OR_RETURN(config.add_bos_token, OptionalBool(j, "add_bos_token", file));
    LS_ASSIGN_OR_RETURN(config.add_eos_token, OptionalBool(j, "add_eos_token", file));
    LS_ASSIGN_OR_RETURN(config.bos_token, TokenString(j, "bos_token", file));
    LS_ASSIGN_OR_RETURN(config.eos_token, TokenString(j, "eos_token", file));
  }
  LS_RETURN_IF_ERROR(ReadTokenIds(dir / "generation_config.json", &config));
  LS_RETURN_IF_ERROR(ReadTokenIds(dir / "config.json", &config));
  return config;
}

}  // namespace layerskip::tokenizer_internal
