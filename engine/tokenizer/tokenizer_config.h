#pragma once
// What a model directory says about special tokens besides the tokenizer file itself:
// tokenizer_config.json (add_bos_token, add_eos_token, bos_token, eos_token), generation_config.json and
// config.json (bos_token_id, eos_token_id).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace layerskip::tokenizer_internal {

struct TokenizerConfig {
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<std::string> bos_token;  // token strings from tokenizer_config.json
  std::optional<std::string> eos_token;
  std::optional<int> bos_token_id;  // from generation_config.json, else config.json
  std::vector<int> eos_token_ids;   // idem; eos_token_id may be an int or a list
};

// Parses a JSON file; NotFound when missing, InvalidArgument (naming the file) when malformed.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::filesystem::path& path);

// Reads the optional files above from dir; missing files are fine, malformed ones are errors.
absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::filesystem::path& dir);

}  // namespace layerskip::tokenizer_internal
