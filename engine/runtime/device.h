#pragma once
// Where a backend computes: "cpu", "cuda" (= cuda:0) or "cuda:N". Parsed once at the edge (flags, requests).
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace layerskip {

struct DeviceSpec {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // the CUDA device ordinal; 0 for the CPU

  bool is_cpu() const { return kind == Kind::kCpu; }
  bool is_cuda() const { return kind == Kind::kCuda; }
  // "cpu", "cuda:N".
  std::string ToString() const;
  // Parses "cpu", "cuda" or "cuda:N" (N in [0, 1023]); InvalidArgument quoting the text otherwise.
  static absl::StatusOr<DeviceSpec> Parse(std::string_view text);
  static DeviceSpec Cpu() { return DeviceSpec{}; }
  static DeviceSpec Cuda(int index) { return DeviceSpec{Kind::kCuda, index}; }
  bool operator==(const DeviceSpec& o) const { return kind == o.kind && index == o.index; }
};

}  // namespace layerskip
