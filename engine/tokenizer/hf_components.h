#pragma once
// The pipeline stages of a Hugging Face tokenizer.json other than the model: normalizers, pre-tokenizers
// and decoders, each parsed from its JSON object. Unsupported types are InvalidArgument errors.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

namespace layerskip::tokenizer_internal {

// A piece of input text on its way to the model. at_start: the piece begins at offset 0 of the original
// text (Metaspace's prepend_scheme "first" uses it).
struct PreToken {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Normalize(std::string text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits and transforms pieces in place.
  virtual void PreTokenize(std::vector<PreToken>* pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token strings (the decoders' decode_chain); the caller concatenates the result.
  virtual void Decode(std::vector<std::string>* tokens) const = 0;
};

// Parse one stage; `where` is a path such as "dir/tokenizer.json: normalizer" for error messages.
// A null JSON value gives nullptr (no such stage).
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& j, const std::string& where);
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& j, const std::string& where);

}  // namespace layerskip::tokenizer_internal
