#include "flags/token_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace layerskip::flags {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' || token.back() == '\t'))
    token.pop_back();
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": '", path, "' holds no token"));
  return token;
}

}  // namespace layerskip::flags
