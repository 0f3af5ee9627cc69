#pragma once
// The command-line flag parser every binary uses: --name value, --name=value, and boolean --name.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip::flags {

class Flags {
 public:
  // Parses argv[first..]. `booleans` are flags that take no value; `repeated` may appear more than once.
  // Every other flag must be in `known` and have a value. Errors name the flag.
  static absl::StatusOr<Flags> Parse(int argc, char** argv, int first, const std::set<std::string>& known,
                                     const std::set<std::string>& booleans = {},
                                     const std::set<std::string>& repeated = {});

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::multimap<std::string, std::string> values_;
};

// Whether argv[first..] asks for --help (or -h) anywhere: binaries print their usage then, whatever else
// the command line holds.
bool HelpRequested(int argc, char** argv, int first);

// "1,2,3" -> {1,2,3}; errors name `what`.
absl::StatusOr<std::vector<int>> ParseIntList(const std::string& text, const std::string& what);

}  // namespace layerskip::flags
