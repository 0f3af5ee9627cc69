#include "coordinator/api/chat/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator::chat {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

absl::Status Error(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
}

int CountLines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Decodes a string literal's escapes the way Jinja (Python) does; unknown escapes stay as written.
void AppendEscape(char c, std::string& out) {
  switch (c) {
    case 'n': out += '\n'; break;
    case 't': out += '\t'; break;
    case 'r': out += '\r'; break;
    case '\\': out += '\\'; break;
    case '\'': out += '\''; break;
    case '"': out += '"'; break;
    case '0': out += '\0'; break;
    default: out += '\\'; out += c;
  }
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : s_(src) {}

  absl::StatusOr<std::vector<JinjaToken>> Run() {
    bool strip_next = false, trim_newline = false;
    while (pos_ <= s_.size()) {
      size_t p = pos_;
      while (true) {
        p = s_.find('{', p);
        if (p == std::string_view::npos || p + 1 >= s_.size()) { p = std::string_view::npos; break; }
        const char c = s_[p + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++p;
      }
      std::string text(s_.substr(pos_, p == std::string_view::npos ? std::string_view::npos : p - pos_));
      // Whether the text starts a line: the template's start, or the previous tag took a newline with it.
      bool line_start = pos_ == 0;
      if (strip_next) {
        size_t i = 0;
        while (i < text.size() && IsSpace(text[i])) ++i;
        line_start = i > 0 && text[i - 1] == '\n';
        line_ += CountLines(text.substr(0, i));
        text.erase(0, i);
      } else if (trim_newline) {
        const size_t n = text.rfind("\n", 0) == 0 ? 1 : text.rfind("\r\n", 0) == 0 ? 2 : 0;
        line_start = n > 0;
        line_ += n > 0;
        text.erase(0, n);
      }
      if (p == std::string_view::npos) {
        Emit(JinjaToken::kText, std::move(text));
        break;
      }
      const char kind = s_[p + 1];
      const char marker = p + 2 < s_.size() ? s_[p + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (marker != '+' && (kind == '%' || kind == '#')) {  // lstrip_blocks
        size_t nl = text.find_last_of('\n');
        size_t start = nl == std::string::npos ? 0 : nl + 1;
        bool blank = true;
        for (size_t i = start; i < text.size(); ++i) blank = blank && (text[i] == ' ' || text[i] == '\t');
        // Only at the start of a line: after a newline, or at the start of the template.
        if (blank && (nl != std::string::npos || line_start)) text.erase(start);
      }
      line_ += CountLines(text);
      Emit(JinjaToken::kText, std::move(text));
      size_t q = p + 2 + (marker == '-' || marker == '+');
      bool close_minus = false;
      if (kind == '#') {
        const size_t e = s_.find("#}", q);
        if (e == std::string_view::npos) return Error(line_, "unterminated comment {# ... #}");
        close_minus = e > q && s_[e - 1] == '-';
        line_ += CountLines(s_.substr(p, e + 2 - p));
        pos_ = e + 2;
      } else {
        Emit(kind == '{' ? JinjaToken::kExprBegin : JinjaToken::kStmtBegin, "");
        const char close = kind == '{' ? '}' : '%';
        pos_ = q;
        absl::Status st = LexTag(close, close_minus);
        if (!st.ok()) return st;
      }
      strip_next = close_minus;
      trim_newline = !close_minus && kind != '{';  // trim_blocks
    }
    Emit(JinjaToken::kEof, "");
    return std::move(tokens_);
  }

 private:
  void Emit(JinjaToken::Kind k, std::string text) {
    if (k == JinjaToken::kText && text.empty()) return;
    tokens_.push_back({k, std::move(text), line_});
  }

  // Tokens inside {{ }} or {% %} up to and including the closing delimiter (close is '}' or '%').
  absl::Status LexTag(char close, bool& close_minus) {
    const int start_line = line_;
    while (true) {
      if (pos_ >= s_.size()) return Error(start_line, close == '}' ? "unterminated {{ ... }}" : "unterminated {% ... %}");
      const char c = s_[pos_];
      if (IsSpace(c)) {
        line_ += c == '\n';
        ++pos_;
        continue;
      }
      if (c == '-' && pos_ + 2 < s_.size() + 0 && s_[pos_ + 1] == close && s_[pos_ + 2] == '}') {
        close_minus = true;
        pos_ += 3;
        Emit(JinjaToken::kTagEnd, "");
        return absl::OkStatus();
      }
      if (c == close && pos_ + 1 < s_.size() && s_[pos_ + 1] == '}') {
        pos_ += 2;
        Emit(JinjaToken::kTagEnd, "");
        return absl::OkStatus();
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        Emit(JinjaToken::kName, std::string(s_.substr(pos_, e - pos_)));
        pos_ = e;
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos_;
        while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        bool is_float = false;
        if (e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        }
        Emit(is_float ? JinjaToken::kFloat : JinjaToken::kInt, std::string(s_.substr(pos_, e - pos_)));
        pos_ = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        std::string out;
        size_t e = pos_ + 1;
        while (e < s_.size() && s_[e] != c) {
          if (s_[e] == '\\' && e + 1 < s_.size()) {
            AppendEscape(s_[e + 1], out);
            e += 2;
          } else {
            line_ += s_[e] == '\n';
            out += s_[e++];
          }
        }
        if (e >= s_.size()) return Error(line_, "unterminated string literal");
        Emit(JinjaToken::kString, std::move(out));
        pos_ = e + 1;
        continue;
      }
      static const char* kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
      bool matched = false;
      for (const char* op : kTwo) {
        if (s_.substr(pos_, 2) == op) {
          Emit(JinjaToken::kOp, op);
          pos_ += 2;
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (std::strchr("()[]{}.,:|~+-*/%<>=", c)) {
        Emit(JinjaToken::kOp, std::string(1, c));
        ++pos_;
        continue;
      }
      return Error(line_, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<JinjaToken> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<JinjaToken>> LexJinja(std::string_view source) { return Lexer(source).Run(); }

}  // namespace layerskip::coordinator::chat
