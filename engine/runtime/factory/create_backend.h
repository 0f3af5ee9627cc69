#pragma once
// Builds the backend for a device spec (engine/runtime/device.h): the CPU backend always, the CUDA backend
// when this binary was built with CUDA (-DLAYERSKIP_CUDA=ON) and the device exists. Its own library
// (layerskip_backends) so that the CPU runtime does not depend on CUDA.
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/weights.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/device.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip {

struct BackendOptions {
  DeviceSpec device;
  int num_slots = 1;  // KV-cache slots (sequences at once)
  int capacity = 0;   // positions per slot
  int threads = 0;    // CPU backend: worker threads (0: all cores)
  // A CUDA device's KV cache (engine/runtime/kv_budget.h), when either is given: --kv-cache-positions caps
  // the positions per slot, --gpu-memory-fraction F sizes the cache to F x the device's memory less weights
  // and scratch (fewer slots when fewer fit, or an error when exact_slots). Neither: num_slots x capacity.
  int64_t kv_positions = 0;
  double gpu_memory_fraction = 0;
  bool exact_slots = false;  // a pipeline stage: every slot the coordinator asked for, or an error
};

// OK when `device` can be used by this binary on this machine; else FailedPrecondition with one line that
// names the device and the reason ("cuda:0: no CUDA device (cudaGetDeviceCount: ...)", "cuda:0: this
// binary was built without CUDA ...").
absl::Status CheckDevice(const DeviceSpec& device);

// A backend over the weights' loaded layers (+ embedding and head when loaded) with its own KV cache.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& options);

// A backend for a loaded model directory with num_slots x m.context positions: on the CPU it shares
// m.model (its threads and draft vocabulary); on CUDA it uploads m.weights and takes m.model's draft
// vocabulary. `m` outlives the backend.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const LoadedModel& m, const DeviceSpec& device, int num_slots,
                                                       int64_t kv_positions = 0, double gpu_memory_fraction = 0);

}  // namespace layerskip
