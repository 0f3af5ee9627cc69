#pragma once
// A CUDA device's memory, free and total (cudaMemGetInfo), for the KV-cache planner (engine/runtime/kv_budget.h).
#include <cstdint>

#include "absl/status/statusor.h"

namespace layerskip::cuda {

struct DeviceMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// Device `device` (0-based); the calling thread's current device is left as it was. InvalidArgument when
// there is no such device; Internal naming the CUDA error otherwise.
absl::StatusOr<DeviceMemory> QueryDeviceMemory(int device);

}  // namespace layerskip::cuda
