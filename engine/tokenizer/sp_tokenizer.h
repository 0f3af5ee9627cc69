#pragma once
// Tokenizer backed by a sentencepiece tokenizer.model (Llama 1/2 style).
#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_config.h"

namespace layerskip::tokenizer_internal {

// Loads `path`. Encode: control pieces written in the text (<s>, </s>) become their ids, each stretch between
// them is encoded by sentencepiece; BOS is added when add_bos_token (default true), EOS when add_eos_token
// (default false). Decode: runs of ordinary ids via sentencepiece, control / unknown ids as their piece text
// (dropped with skip_special_tokens).
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::filesystem::path& path,
                                                                        const TokenizerConfig& config);

}  // namespace layerskip::tokenizer_internal
