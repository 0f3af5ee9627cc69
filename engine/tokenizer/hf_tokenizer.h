#pragma once
// Tokenizer backed by a Hugging Face tokenizer.json with a BPE model: added tokens, normalizer,
// pre-tokenizer, BPE, post-processor (TemplateProcessing) and decoder, as the `tokenizers` library runs them.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_config.h"
#include <nlohmann/json.hpp>

namespace layerskip::tokenizer_internal {

// Builds the tokenizer from the parsed tokenizer.json (`file` names it in errors) and the directory's config.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateHfTokenizer(const nlohmann::json& spec, const TokenizerConfig& config,
                                                             const std::string& file);

}  // namespace layerskip::tokenizer_internal
