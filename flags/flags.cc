#include "flags/flags.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace layerskip::flags {

absl::StatusOr<Flags> Flags::Parse(int argc, char** argv, int first, const std::set<std::string>& known,
                                   const std::set<std::string>& booleans, const std::set<std::string>& repeated) {
  Flags flags;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (booleans.count(name)) {
      if (inline_value && value != "true" && value != "false")
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      if (!inline_value || value == "true") flags.values_.emplace(name, "true");
      continue;
    }
    if (!known.count(name) && !repeated.count(name))
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (!inline_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (flags.Has(name) && !repeated.count(name))
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    flags.values_.emplace(name, value);
  }
  return flags;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> Flags::GetAll(const std::string& name) const {
  std::vector<std::string> out;
  for (auto [it, end] = values_.equal_range(name); it != end; ++it) out.push_back(it->second);
  return out;
}

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v))
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", Get(name), "' is not an integer"));
  return v;
}

absl::StatusOr<double> Flags::GetDouble(const std::string& name, double fallback) const {
  if (!Has(name)) return fallback;
  double v;
  if (!absl::SimpleAtod(Get(name), &v))
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", Get(name), "' is not a number"));
  return v;
}

absl::StatusOr<std::vector<int>> ParseIntList(const std::string& text, const std::string& what) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int v;
    if (!absl::SimpleAtoi(part, &v))
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", part, "' is not an integer"));
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  return out;
}

bool HelpRequested(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

}  // namespace layerskip::flags
