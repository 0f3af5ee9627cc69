#pragma once
// PCRE2 regex (UTF + UCP, JIT when available) used by Split / ByteLevel pre-tokenizers and Replace.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip::tokenizer_internal {

class Regex {
 public:
  // Compiles an Oniguruma-style pattern (as written in tokenizer.json); `where` names it in errors.
  static absl::StatusOr<Regex> Compile(const std::string& pattern, const std::string& where);
  // Compiles a literal string.
  static absl::StatusOr<Regex> Literal(const std::string& text, const std::string& where);

  // Non-empty matches of the pattern in s, left to right, as [start, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view s) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
};

}  // namespace layerskip::tokenizer_internal
