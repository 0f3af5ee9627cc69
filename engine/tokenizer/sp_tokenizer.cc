// sentencepiece tokenizer (see sp_tokenizer.h).
#include "engine/tokenizer/sp_tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/sp_processor.h"

namespace layerskip::tokenizer_internal {
namespace {

class SpTokenizer : public Tokenizer {
 public:
  std::vector<int> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(const std::vector<int>& ids, bool skip_special_tokens) const override;
  int vocab_size() const override { return sp_.PieceSize(); }
  std::optional<int> bos_id() const override { return bos_id_; }
  std::vector<int> eos_ids() const override { return eos_ids_; }
  std::optional<int> TokenToId(std::string_view token) const override;

  absl::Status Init(const std::filesystem::path& path, const TokenizerConfig& config);

 private:
  bool IsSpecial(int id) const { return sp_.IsControl(id) || sp_.IsUnknown(id); }
  void EncodePlain(std::string_view text, std::vector<int>* ids) const;

  SpProcessor sp_;
  std::vector<std::pair<std::string, int>> controls_;  // control pieces, longest first
  std::optional<int> bos_id_;
  std::vector<int> eos_ids_;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

absl::Status SpTokenizer::Init(const std::filesystem::path& path, const TokenizerConfig& config) {
  const std::string error = sp_.Load(path.string());
  if (!error.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": sentencepiece cannot load it: ", error));
  }
  for (int id = 0; id < sp_.PieceSize(); ++id) {
    if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) controls_.emplace_back(sp_.IdToPiece(id), id);
  }
  std::stable_sort(controls_.begin(), controls_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  auto lookup = [&](const std::string& token, const char* field) -> absl::StatusOr<int> {
    std::optional<int> id = TokenToId(token);
    if (!id) return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", field, " \"", token, "\" is not in ", path.string()));
    return *id;
  };
  if (config.bos_token) {
    auto id = lookup(*config.bos_token, "bos_token");
    if (!id.ok()) return id.status();
    bos_id_ = *id;
  } else if (config.bos_token_id) {
    bos_id_ = config.bos_token_id;
  } else if (sp_.bos_id() >= 0) {
    bos_id_ = sp_.bos_id();
  }
  if (config.eos_token) {
    auto id = lookup(*config.eos_token, "eos_token");
    if (!id.ok()) return id.status();
    eos_ids_.push_back(*id);
  } else if (config.eos_token_ids.empty() && sp_.eos_id() >= 0) {
    eos_ids_.push_back(sp_.eos_id());
  }
  for (int id : config.eos_token_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  add_bos_ = config.add_bos_token.value_or(true) && bos_id_.has_value();
  add_eos_ = config.add_eos_token.value_or(false) && !eos_ids_.empty();
  return absl::OkStatus();
}

std::optional<int> SpTokenizer::TokenToId(std::string_view token) const {
  const int id = sp_.PieceToId(token);
  if (id < 0 || id >= sp_.PieceSize()) return std::nullopt;
  if (sp_.IsUnknown(id) && sp_.IdToPiece(id) != token) return std::nullopt;
  return id;
}

void SpTokenizer::EncodePlain(std::string_view text, std::vector<int>* ids) const {
  if (text.empty()) return;
  const std::vector<int> piece_ids = sp_.Encode(text);
  ids->insert(ids->end(), piece_ids.begin(), piece_ids.end());
}

std::vector<int> SpTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int> ids;
  if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
  size_t last = 0;
  for (size_t pos = 0; pos < text.size();) {
    const auto it = std::find_if(controls_.begin(), controls_.end(),
                                 [&](const auto& c) { return text.compare(pos, c.first.size(), c.first) == 0; });
    if (it == controls_.end()) {
      ++pos;
      continue;
    }
    EncodePlain(text.substr(last, pos - last), &ids);
    ids.push_back(it->second);
    pos = last = pos + it->first.size();
  }
  EncodePlain(text.substr(last), &ids);
  if (add_special_tokens && add_eos_) ids.push_back(eos_ids_[0]);
  return ids;
}

std::string SpTokenizer::Decode(const std::vector<int>& ids, bool skip_special_tokens) const {
  std::string out;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    out += sp_.Decode(run);
    run.clear();
  };
  for (int id : ids) {
    if (id < 0 || id >= sp_.PieceSize()) continue;
    if (IsSpecial(id)) {
      flush();
      if (!skip_special_tokens) out += sp_.IdToPiece(id);
    } else {
      run.push_back(id);
    }
  }
  flush();
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSentencePieceTokenizer(const std::filesystem::path& path,
                                                                        const TokenizerConfig& config) {
  auto tokenizer = std::make_unique<SpTokenizer>();
  const absl::Status status = tokenizer->Init(path, config);
  if (!status.ok()) return status;
  return tokenizer;
}

}  // namespace layerskip::tokenizer_internal
