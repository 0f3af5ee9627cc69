#pragma once
// Tokens of a Jinja2 template, with the whitespace rules transformers renders chat templates with:
// trim_blocks (the first newline after a block or comment tag is dropped), lstrip_blocks (spaces and tabs
// before a block or comment tag at the start of a line are dropped), and the "-" markers ({%- -%} {{- -}}
// {#- -#}) that strip all whitespace on their side. Comments are dropped.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip::coordinator::chat {

struct JinjaToken {
  enum Kind { kText, kExprBegin, kStmtBegin, kTagEnd, kName, kString, kInt, kFloat, kOp, kEof };
  Kind kind = kEof;
  std::string text;  // text / name / operator / the decoded string / the number's spelling
  int line = 1;
};

// Splits `source` into tokens ending with kEof. INVALID_ARGUMENT for an unterminated tag or string, or a
// character that is no Jinja token, naming the line.
absl::StatusOr<std::vector<JinjaToken>> LexJinja(std::string_view source);

}  // namespace layerskip::coordinator::chat
