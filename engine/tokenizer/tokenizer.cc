// LoadTokenizer: picks tokenizer.json (Hugging Face) or tokenizer.model (sentencepiece) in a model directory.
#include "engine/tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/sp_tokenizer.h"
#include "engine/tokenizer/tokenizer_config.h"
#include "engine/util/status.h"

namespace layerskip {

namespace {
std::string& SentencePieceDisabledReason() {
  static std::string reason;
  return reason;
}
}  // namespace

void DisableSentencePiece(std::string why) { SentencePieceDisabledReason() = std::move(why); }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& dir) {
  using namespace tokenizer_internal;
  const std::filesystem::path json_path = dir / "tokenizer.json";
  const std::filesystem::path model_path = dir / "tokenizer.model";
  const bool has_json = std::filesystem::exists(json_path);
  if (!has_json && !std::filesystem::exists(model_path)) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": no tokenizer.json or tokenizer.model"));
  }
  LS_ASSIGN_OR_RETURN(const TokenizerConfig config, ReadTokenizerConfig(dir));
  if (!has_json) {
    if (!SentencePieceDisabledReason().empty())
      return absl::FailedPreconditionError(absl::StrCat(model_path.string(), ": ", SentencePieceDisabledReason()));
    return CreateSentencePieceTokenizer(model_path, config);
  }
  LS_ASSIGN_OR_RETURN(const nlohmann::json spec, ReadJsonFile(json_path));
  return CreateHfTokenizer(spec, config, json_path.string());
}

}  // namespace layerskip
