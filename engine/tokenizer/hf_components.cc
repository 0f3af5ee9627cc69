// Normalizers, pre-tokenizers and decoders of tokenizer.json (see hf_components.h). Behaviour follows the
// Hugging Face `tokenizers` library; comments name the JSON "type" each class implements.
#include "engine/tokenizer/hf_components.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode_util.h"
#include "engine/util/status.h"

namespace layerskip::tokenizer_internal {
namespace {

using nlohmann::json;

constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

absl::Status Bad(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::StatusOr<std::string> GetString(const json& j, const char* field, const std::string& where) {
  if (!j.contains(field) || !j[field].is_string()) return Bad(where, absl::StrCat("\"", field, "\" must be a string"));
  return j[field].get<std::string>();
}

bool GetBool(const json& j, const char* field, bool fallback) {
  return j.contains(field) && j[field].is_boolean() ? j[field].get<bool>() : fallback;
}

// A {"String": s} or {"Regex": r} pattern.
absl::StatusOr<Regex> ParsePattern(const json& j, const std::string& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    return Regex::Literal(j["String"].get<std::string>(), where);
  }
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    return Regex::Compile(j["Regex"].get<std::string>(), where);
  }
  return Bad(where, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
}

std::string ReplaceAll(const Regex& re, const std::string& text, const std::string& content) {
  std::string out;
  size_t last = 0;
  for (const auto& [start, end] : re.FindAll(text)) {
    out.append(text, last, start - last);
    out.append(content);
    last = end;
  }
  out.append(text, last, std::string::npos);
  return out;
}

// ---- Normalizers ----

class SequenceNormalizer : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> stages;
  std::string Normalize(std::string text) const override {
    for (const auto& s : stages) text = s->Normalize(std::move(text));
    return text;
  }
};

// "Prepend": adds a prefix to non-empty text.
class PrependNormalizer : public Normalizer {
 public:
  std::string prefix;
  std::string Normalize(std::string text) const override { return text.empty() ? text : prefix + text; }
};

// "Replace": every match of the pattern becomes `content`.
class ReplaceNormalizer : public Normalizer {
 public:
  Regex pattern;
  std::string content;
  std::string Normalize(std::string text) const override { return ReplaceAll(pattern, text, content); }
};

// ---- Pre-tokenizers ----

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits each piece at the matches of `re`, keeping or merging the matched parts per `behavior`.
void SplitPieces(const Regex& re, SplitBehavior behavior, bool invert, std::vector<PreToken>* pieces) {
  std::vector<PreToken> out;
  for (PreToken& piece : *pieces) {
    const std::string& t = piece.text;
    struct Segment {
      size_t start, end;
      bool match;
    };
    std::vector<Segment> segs;
    size_t last = 0;
    for (const auto& [start, end] : re.FindAll(t)) {
      if (start > last) segs.push_back({last, start, invert});
      segs.push_back({start, end, !invert});
      last = end;
    }
    if (last < t.size()) segs.push_back({last, t.size(), invert});
    std::vector<Segment> merged;
    switch (behavior) {
      case SplitBehavior::kRemoved:
        for (const Segment& s : segs) if (!s.match) merged.push_back(s);
        break;
      case SplitBehavior::kIsolated:
        merged = segs;
        break;
      case SplitBehavior::kMergedWithPrevious: {
        bool prev_match = false;
        for (const Segment& s : segs) {
          if (s.match && !prev_match && !merged.empty()) merged.back().end = s.end;
          else merged.push_back(s);
          prev_match = s.match;
        }
        break;
      }
      case SplitBehavior::kMergedWithNext: {
        bool prev_match = false;
        std::vector<Segment> reversed;
        for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
          if (it->match && !prev_match && !reversed.empty()) reversed.back().start = it->start;
          else reversed.push_back(*it);
          prev_match = it->match;
        }
        merged.assign(reversed.rbegin(), reversed.rend());
        break;
      }
      case SplitBehavior::kContiguous: {
        bool prev_match = false;
        for (const Segment& s : segs) {
          if (s.match && prev_match && !merged.empty()) merged.back().end = s.end;
          else merged.push_back(s);
          prev_match = s.match;
        }
        break;
      }
    }
    for (const Segment& s : merged) {
      if (s.end > s.start) out.push_back({t.substr(s.start, s.end - s.start), piece.at_start && s.start == 0});
    }
  }
  *pieces = std::move(out);
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> stages;
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (const auto& s : stages) s->PreTokenize(pieces);
  }
};

// "Split": regex or string pattern with a SplitDelimiterBehavior.
class SplitPreTokenizer : public PreTokenizer {
 public:
  Regex pattern;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  void PreTokenize(std::vector<PreToken>* pieces) const override { SplitPieces(pattern, behavior, invert, pieces); }
};

// "ByteLevel": optional leading space, optional GPT-2 regex split, then bytes -> stand-in characters.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  bool add_prefix_space = false;
  std::optional<Regex> gpt2;
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    if (add_prefix_space) {
      for (PreToken& p : *pieces) {
        if (p.text.empty() || p.text[0] != ' ') p.text = " " + p.text;
      }
    }
    if (gpt2) SplitPieces(*gpt2, SplitBehavior::kIsolated, false, pieces);
    const auto& table = ByteToUnicode();
    for (PreToken& p : *pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (char c : p.text) mapped += table[static_cast<uint8_t>(c)];
      p.text = std::move(mapped);
    }
  }
};

enum class PrependScheme { kAlways, kFirst, kNever };

// "Metaspace": spaces -> replacement, replacement prepended per prepend_scheme, optional split before it.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  std::string replacement;
  PrependScheme scheme = PrependScheme::kAlways;
  std::optional<Regex> split;
  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (PreToken& p : *pieces) {
      p.text = absl::StrReplaceAll(p.text, {{" ", replacement}});
      const bool starts = p.text.compare(0, replacement.size(), replacement) == 0;
      if (!starts && (scheme == PrependScheme::kAlways || (scheme == PrependScheme::kFirst && p.at_start))) {
        p.text.insert(0, replacement);
      }
    }
    if (split) SplitPieces(*split, SplitBehavior::kMergedWithNext, false, pieces);
  }
};

absl::StatusOr<PrependScheme> ParsePrependScheme(const json& j, const std::string& where) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    return Bad(where, absl::StrCat("unknown prepend_scheme \"", s, "\""));
  }
  return GetBool(j, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;  // older files
}

// ---- Decoders ----

class SequenceDecoder : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> stages;
  void Decode(std::vector<std::string>* tokens) const override {
    for (const auto& s : stages) s->Decode(tokens);
  }
};

// "ByteLevel": stand-in characters -> bytes (a token with other characters keeps its own bytes), then
// lossy UTF-8.
class ByteLevelDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      std::string mapped;
      bool ok = true;
      for (size_t pos = 0; pos < token.size() && ok;) {
        char32_t cp = 0;
        uint8_t b = 0;
        ok = NextCodePoint(token, &pos, &cp) && UnicodeToByte(cp, &b);
        mapped.push_back(static_cast<char>(b));
      }
      bytes += ok ? mapped : token;
    }
    tokens->assign(1, Utf8Lossy(bytes));
  }
};

// "Metaspace": replacement -> ' '; in the first token (unless prepend_scheme is never) it is dropped.
class MetaspaceDecoder : public Decoder {
 public:
  std::string replacement;
  PrependScheme scheme = PrependScheme::kAlways;
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      const bool drop = i == 0 && scheme != PrependScheme::kNever;
      (*tokens)[i] = absl::StrReplaceAll((*tokens)[i], {{replacement, drop ? "" : " "}});
    }
  }
};

// "Replace": per token.
class ReplaceDecoder : public Decoder {
 public:
  Regex pattern;
  std::string content;
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) t = ReplaceAll(pattern, t, content);
  }
};

// "ByteFallback": runs of <0xXX> tokens -> their bytes as UTF-8, or one U+FFFD per byte when invalid.
class ByteFallbackDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (IsValidUtf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (std::string& t : *tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(t[3]) && std::isxdigit(t[4])) {
        bytes.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }
};

// "Fuse": all tokens -> one.
class FuseDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
  }
};

// "Strip": removes up to `start` leading and `stop` trailing `content` characters from each token.
class StripDecoder : public Decoder {
 public:
  std::string content;
  int start = 0, stop = 0;
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      std::vector<std::string_view> chars = SplitChars(t);
      size_t begin = 0, end = chars.size();
      while (begin < static_cast<size_t>(start) && begin < end && chars[begin] == content) ++begin;
      for (int i = 0; i < stop && end > begin && chars[end - 1] == content; ++i) --end;
      std::string s;
      for (size_t i = begin; i < end; ++i) s.append(chars[i]);
      t = std::move(s);
    }
  }
};

absl::StatusOr<std::string> GetType(const json& j, const std::string& where) {
  if (!j.is_object()) return Bad(where, "must be an object or null");
  return GetString(j, "type", where);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  LS_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) return Bad(where, "\"normalizers\" must be an array");
    auto seq = std::make_unique<SequenceNormalizer>();
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      LS_ASSIGN_OR_RETURN(auto stage, ParseNormalizer(j["normalizers"][i], absl::StrCat(where, ".normalizers[", i, "]")));
      if (stage) seq->stages.push_back(std::move(stage));
    }
    return seq;
  }
  if (type == "Prepend") {
    auto n = std::make_unique<PrependNormalizer>();
    LS_ASSIGN_OR_RETURN(n->prefix, GetString(j, "prepend", where));
    return n;
  }
  if (type == "Replace") {
    auto n = std::make_unique<ReplaceNormalizer>();
    LS_ASSIGN_OR_RETURN(n->pattern, ParsePattern(j.value("pattern", json()), where));
    LS_ASSIGN_OR_RETURN(n->content, GetString(j, "content", where));
    return n;
  }
  return Bad(where, absl::StrCat("normalizer type \"", type, "\" is not supported"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  LS_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return Bad(where, "\"pretokenizers\" must be an array");
    }
    auto seq = std::make_unique<SequencePreTokenizer>();
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      LS_ASSIGN_OR_RETURN(auto stage,
                          ParsePreTokenizer(j["pretokenizers"][i], absl::StrCat(where, ".pretokenizers[", i, "]")));
      if (stage) seq->stages.push_back(std::move(stage));
    }
    return seq;
  }
  if (type == "Split") {
    auto p = std::make_unique<SplitPreTokenizer>();
    LS_ASSIGN_OR_RETURN(p->pattern, ParsePattern(j.value("pattern", json()), where));
    LS_ASSIGN_OR_RETURN(const std::string behavior, GetString(j, "behavior", where));
    if (behavior == "Removed") p->behavior = SplitBehavior::kRemoved;
    else if (behavior == "Isolated") p->behavior = SplitBehavior::kIsolated;
    else if (behavior == "MergedWithPrevious") p->behavior = SplitBehavior::kMergedWithPrevious;
    else if (behavior == "MergedWithNext") p->behavior = SplitBehavior::kMergedWithNext;
    else if (behavior == "Contiguous") p->behavior = SplitBehavior::kContiguous;
    else return Bad(where, absl::StrCat("unknown behavior \"", behavior, "\""));
    p->invert = GetBool(j, "invert", false);
    return p;
  }
  if (type == "ByteLevel") {
    auto p = std::make_unique<ByteLevelPreTokenizer>();
    p->add_prefix_space = GetBool(j, "add_prefix_space", true);
    if (GetBool(j, "use_regex", true)) {
      LS_ASSIGN_OR_RETURN(Regex re, Regex::Compile(kGpt2Pattern, where));
      p->gpt2 = std::move(re);
    }
    return p;
  }
  if (type == "Metaspace") {
    auto p = std::make_unique<MetaspacePreTokenizer>();
    LS_ASSIGN_OR_RETURN(p->replacement, GetString(j, "replacement", where));
    LS_ASSIGN_OR_RETURN(p->scheme, ParsePrependScheme(j, where));
    if (GetBool(j, "split", true)) {
      LS_ASSIGN_OR_RETURN(Regex re, Regex::Literal(p->replacement, where));
      p->split = std::move(re);
    }
    return p;
  }
  return Bad(where, absl::StrCat("pre_tokenizer type \"", type, "\" is not supported"));
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  LS_ASSIGN_OR_RETURN(const std::string type, GetType(j, where));
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) return Bad(where, "\"decoders\" must be an array");
    auto seq = std::make_unique<SequenceDecoder>();
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      LS_ASSIGN_OR_RETURN(auto stage, ParseDecoder(j["decoders"][i], absl::StrCat(where, ".decoders[", i, "]")));
      if (stage) seq->stages.push_back(std::move(stage));
    }
    return seq;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    auto d = std::make_unique<MetaspaceDecoder>();
    LS_ASSIGN_OR_RETURN(d->replacement, GetString(j, "replacement", where));
    LS_ASSIGN_OR_RETURN(d->scheme, ParsePrependScheme(j, where));
    return d;
  }
  if (type == "Replace") {
    auto d = std::make_unique<ReplaceDecoder>();
    LS_ASSIGN_OR_RETURN(d->pattern, ParsePattern(j.value("pattern", json()), where));
    LS_ASSIGN_OR_RETURN(d->content, GetString(j, "content", where));
    return d;
  }
  if (type == "Strip") {
    auto d = std::make_unique<StripDecoder>();
    LS_ASSIGN_OR_RETURN(d->content, GetString(j, "content", where));
    d->start = j.value("start", 0);
    d->stop = j.value("stop", 0);
    return d;
  }
  return Bad(where, absl::StrCat("decoder type \"", type, "\" is not supported"));
}

}  // namespace layerskip::tokenizer_internal
