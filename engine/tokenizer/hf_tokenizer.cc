// Hugging Face tokenizer.json tokenizer (see hf_tokenizer.h).
#include "engine/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <array>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/hf_components.h"
#include "engine/tokenizer/unicode_util.h"
#include "engine/util/status.h"

namespace layerskip::tokenizer_internal {
namespace {

using nlohmann::json;

// One entry of "added_tokens".
struct AddedToken {
  int id = 0;
  std::string content;
  std::string match;  // what is searched for: content, or the normalized content when normalized
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Added tokens searched leftmost-longest, indexed by first byte.
class AddedTokenMatcher {
 public:
  void Add(const AddedToken* token) {
    if (token->match.empty()) return;
    auto& list = by_first_byte_[static_cast<uint8_t>(token->match[0])];
    list.push_back(token);
    std::stable_sort(list.begin(), list.end(),
                     [](const AddedToken* a, const AddedToken* b) { return a->match.size() > b->match.size(); });
    empty_ = false;
  }
  bool empty() const { return empty_; }

  struct Match {
    size_t start, end;  // including stripped whitespace
    const AddedToken* token;
  };
  std::vector<Match> FindAll(std::string_view text) const {
    std::vector<Match> matches;
    if (empty_) return matches;
    size_t prev_end = 0;
    for (size_t pos = 0; pos < text.size();) {
      const AddedToken* found = nullptr;
      for (const AddedToken* t : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
        if (text.compare(pos, t->match.size(), t->match) == 0 && SingleWordOk(*t, text, pos)) {
          found = t;
          break;
        }
      }
      if (found == nullptr) {
        ++pos;
        continue;
      }
      size_t start = pos, end = pos + found->match.size();
      if (found->lstrip) start = SkipSpaceBackward(text, start, prev_end);
      if (found->rstrip) end = SkipSpaceForward(text, end);
      matches.push_back({start, end, found});
      pos = prev_end = end;
    }
    return matches;
  }

 private:
  static bool IsWordChar(char32_t cp) { return cp == '_' || (cp < 0x80 ? std::isalnum(cp) : !IsUnicodeSpace(cp)); }
  static bool SingleWordOk(const AddedToken& t, std::string_view text, size_t pos) {
    if (!t.single_word) return true;
    const size_t end = pos + t.match.size();
    if (end < text.size()) {
      size_t p = end;
      char32_t cp;
      NextCodePoint(text, &p, &cp);
      if (IsWordChar(cp)) return false;
    }
    if (pos > 0) {
      size_t p = pos - 1;
      while (p > 0 && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
      char32_t cp;
      NextCodePoint(text, &p, &cp);
      if (IsWordChar(cp)) return false;
    }
    return true;
  }
  static size_t SkipSpaceBackward(std::string_view text, size_t start, size_t limit) {
    while (start > limit) {
      size_t p = start - 1;
      while (p > limit && (static_cast<uint8_t>(text[p]) & 0xC0) == 0x80) --p;
      size_t q = p;
      char32_t cp;
      NextCodePoint(text, &q, &cp);
      if (!IsUnicodeSpace(cp)) break;
      start = p;
    }
    return start;
  }
  static size_t SkipSpaceForward(std::string_view text, size_t end) {
    while (end < text.size()) {
      size_t p = end;
      char32_t cp;
      NextCodePoint(text, &p, &cp);
      if (!IsUnicodeSpace(cp)) break;
      end = p;
    }
    return end;
  }

  std::array<std::vector<const AddedToken*>, 256> by_first_byte_;
  bool empty_ = true;
};

class HfTokenizer : public Tokenizer {
 public:
  std::vector<int> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(const std::vector<int>& ids, bool skip_special_tokens) const override;
  int vocab_size() const override { return vocab_size_; }
  std::optional<int> bos_id() const override { return bos_id_; }
  std::vector<int> eos_ids() const override { return eos_ids_; }
  std::optional<int> TokenToId(std::string_view token) const override;

  absl::Status Init(const json& spec, const TokenizerConfig& config, const std::string& file);

 private:
  absl::Status ParseAddedTokens(const json& spec, const std::string& file);
  absl::Status ParsePostProcessor(const json& j, const std::string& where);
  absl::Status ApplyConfig(const TokenizerConfig& config, const std::string& file);
  // Normalizes, pre-tokenizes and BPE-encodes one stretch of text between added tokens.
  void EncodeSegment(std::string text, bool at_start, std::vector<int>* ids) const;

  BpeModel model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<std::unique_ptr<AddedToken>> added_;
  absl::flat_hash_map<int, const AddedToken*> added_by_id_;
  absl::flat_hash_map<std::string, int> added_by_content_;
  AddedTokenMatcher raw_matcher_;         // normalized == false: matched in the raw text
  AddedTokenMatcher normalized_matcher_;  // normalized == true: matched after normalization
  std::vector<int> prefix_ids_, suffix_ids_;  // added around the ids with add_special_tokens
  int vocab_size_ = 0;
  std::optional<int> bos_id_;
  std::vector<int> eos_ids_;
};

absl::Status HfTokenizer::Init(const json& spec, const TokenizerConfig& config, const std::string& file) {
  if (!spec.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  if (!spec.contains("model")) return absl::InvalidArgumentError(absl::StrCat(file, ": \"model\" is missing"));
  LS_ASSIGN_OR_RETURN(model_, BpeModel::FromJson(spec["model"], file));
  const json null;
  auto field = [&](const char* name) -> const json& { return spec.contains(name) ? spec[name] : null; };
  LS_ASSIGN_OR_RETURN(normalizer_, ParseNormalizer(field("normalizer"), file + ": normalizer"));
  LS_ASSIGN_OR_RETURN(pre_tokenizer_, ParsePreTokenizer(field("pre_tokenizer"), file + ": pre_tokenizer"));
  LS_ASSIGN_OR_RETURN(decoder_, ParseDecoder(field("decoder"), file + ": decoder"));
  LS_RETURN_IF_ERROR(ParseAddedTokens(spec, file));
  LS_RETURN_IF_ERROR(ParsePostProcessor(field("post_processor"), file + ": post_processor"));
  return ApplyConfig(config, file);
}

absl::Status HfTokenizer::ParseAddedTokens(const json& spec, const std::string& file) {
  vocab_size_ = model_.size();
  if (!spec.contains("added_tokens") || spec["added_tokens"].is_null()) return absl::OkStatus();
  if (!spec["added_tokens"].is_array()) return absl::InvalidArgumentError(absl::StrCat(file, ": \"added_tokens\" must be an array"));
  for (size_t i = 0; i < spec["added_tokens"].size(); ++i) {
    const json& t = spec["added_tokens"][i];
    const std::string where = absl::StrCat(file, ": added_tokens[", i, "]");
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 ||
        !t.contains("content") || !t["content"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, " needs an integer \"id\" and a string \"content\""));
    }
    auto token = std::make_unique<AddedToken>();
    token->id = t["id"].get<int>();
    token->content = t["content"].get<std::string>();
    auto flag = [&](const char* name) { return t.contains(name) && t[name].is_boolean() && t[name].get<bool>(); };
    token->special = flag("special");
    token->lstrip = flag("lstrip");
    token->rstrip = flag("rstrip");
    token->single_word = flag("single_word");
    token->normalized = flag("normalized");
    token->match = token->normalized && normalizer_ ? normalizer_->Normalize(token->content) : token->content;
    (token->normalized ? normalized_matcher_ : raw_matcher_).Add(token.get());
    added_by_id_[token->id] = token.get();
    added_by_content_[token->content] = token->id;
    vocab_size_ = std::max(vocab_size_, token->id + 1);
    added_.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::ParsePostProcessor(const json& j, const std::string& where) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = j.is_object() ? j.value("type", std::string()) : std::string();
  if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      LS_RETURN_IF_ERROR(ParsePostProcessor(j["processors"][i], absl::StrCat(where, ".processors[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return absl::InvalidArgumentError(absl::StrCat(where, ": type \"", type, "\" is not supported"));
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"single\" must be an array"));
  }
  prefix_ids_.clear();
  suffix_ids_.clear();
  bool seen_sequence = false;
  for (const json& item : j["single"]) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id")) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": \"single\" items must be Sequence or SpecialToken"));
    }
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json();
    if (!specials.is_object() || !specials.contains(name) || !specials[name].contains("ids") ||
        !specials[name]["ids"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": special_tokens has no ids for \"", name, "\""));
    }
    for (const json& id : specials[name]["ids"]) (seen_sequence ? suffix_ids_ : prefix_ids_).push_back(id.get<int>());
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::ApplyConfig(const TokenizerConfig& config, const std::string& file) {
  auto lookup = [&](const std::string& token, const char* field) -> absl::StatusOr<int> {
    std::optional<int> id = TokenToId(token);
    if (!id) return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", field, " \"", token, "\" is not in ", file));
    return *id;
  };
  if (config.bos_token) {
    LS_ASSIGN_OR_RETURN(bos_id_, lookup(*config.bos_token, "bos_token"));
  } else {
    bos_id_ = config.bos_token_id;
  }
  if (config.eos_token) {
    LS_ASSIGN_OR_RETURN(int eos, lookup(*config.eos_token, "eos_token"));
    eos_ids_.push_back(eos);
  }
  for (int id : config.eos_token_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  // Explicit add_bos_token / add_eos_token override what the post-processor adds on that side.
  if (config.add_bos_token) {
    if (*config.add_bos_token && !bos_id_) {
      return absl::InvalidArgumentError("tokenizer_config.json: add_bos_token is true but there is no bos_token");
    }
    prefix_ids_.clear();
    if (*config.add_bos_token) prefix_ids_.push_back(*bos_id_);
  }
  if (config.add_eos_token) {
    if (*config.add_eos_token && eos_ids_.empty()) {
      return absl::InvalidArgumentError("tokenizer_config.json: add_eos_token is true but there is no eos_token");
    }
    suffix_ids_.clear();
    if (*config.add_eos_token) suffix_ids_.push_back(eos_ids_[0]);
  }
  return absl::OkStatus();
}

std::optional<int> HfTokenizer::TokenToId(std::string_view token) const {
  if (auto it = added_by_content_.find(AbslView(token)); it != added_by_content_.end()) return it->second;
  return model_.TokenToId(token);
}

void HfTokenizer::EncodeSegment(std::string text, bool at_start, std::vector<int>* ids) const {
  if (normalizer_) text = normalizer_->Normalize(std::move(text));
  // Second pass: added tokens with normalized == true, matched in the normalized text.
  std::vector<PreToken> pieces;
  std::vector<const AddedToken*> after;  // added token after pieces[i] (nullptr for none)
  size_t last = 0;
  for (const auto& m : normalized_matcher_.FindAll(text)) {
    pieces.push_back({text.substr(last, m.start - last), at_start && last == 0});
    after.push_back(m.token);
    last = m.end;
  }
  pieces.push_back({text.substr(last), at_start && last == 0});
  after.push_back(nullptr);
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!pieces[i].text.empty()) {
      std::vector<PreToken> words{std::move(pieces[i])};
      if (pre_tokenizer_) pre_tokenizer_->PreTokenize(&words);
      for (const PreToken& w : words) model_.Encode(w.text, ids);
    }
    if (after[i]) ids->push_back(after[i]->id);
  }
}

std::vector<int> HfTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string valid;
  if (!IsValidUtf8(text)) {
    valid = Utf8Lossy(text);
    text = valid;
  }
  std::vector<int> ids;
  if (add_special_tokens) ids = prefix_ids_;
  // First pass: added tokens with normalized == false, matched in the raw text.
  size_t last = 0;
  for (const auto& m : raw_matcher_.FindAll(text)) {
    if (m.start > last) EncodeSegment(std::string(text.substr(last, m.start - last)), last == 0, &ids);
    ids.push_back(m.token->id);
    last = m.end;
  }
  if (last < text.size()) EncodeSegment(std::string(text.substr(last)), last == 0, &ids);
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::string HfTokenizer::Decode(const std::vector<int>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      if (!(skip_special_tokens && it->second->special)) tokens.push_back(it->second->match);
    } else if (const std::string* token = model_.IdToToken(id)) {
      tokens.push_back(*token);
    }
  }
  if (!decoder_) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) absl::StrAppend(&out, i ? " " : "", tokens[i]);
    return out;
  }
  decoder_->Decode(&tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateHfTokenizer(const json& spec, const TokenizerConfig& config,
                                                             const std::string& file) {
  auto tokenizer = std::make_unique<HfTokenizer>();
  try {
    LS_RETURN_IF_ERROR(tokenizer->Init(spec, config, file));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": unexpected JSON structure: ", e.what()));
  }
  return tokenizer;
}

}  // namespace layerskip::tokenizer_internal
