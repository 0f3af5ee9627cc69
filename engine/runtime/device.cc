#include "engine/runtime/device.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace layerskip {

std::string DeviceSpec::ToString() const { return is_cpu() ? "cpu" : absl::StrCat("cuda:", index); }

absl::StatusOr<DeviceSpec> DeviceSpec::Parse(std::string_view text) {
  if (text == "cpu") return Cpu();
  if (text == "cuda") return Cuda(0);
  constexpr std::string_view kPrefix = "cuda:";
  if (text.substr(0, kPrefix.size()) == kPrefix) {
    const std::string_view digits = text.substr(kPrefix.size());
    int n = -1;
    if (!digits.empty() && digits.size() <= 4 && digits.find_first_not_of("0123456789") == std::string_view::npos &&
        absl::SimpleAtoi(std::string(digits), &n) && n >= 0 && n < 1024)
      return Cuda(n);
  }
  return absl::InvalidArgumentError(absl::StrCat("device '", std::string(text), "' is not cpu, cuda or cuda:N"));
}

}  // namespace layerskip
