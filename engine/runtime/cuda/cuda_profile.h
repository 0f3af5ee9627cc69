#pragma once
// Per-kernel device times from CUDA events recorded between a model's launches (cuda_bench --profile).
// Eager: an event after each launch, so a kernel's time also holds any wait for the host to launch it.
// Captured into a CUDA graph (`captured`): the events become graph nodes (cudaEventRecordExternal), so a
// replay times kernels running back to back, without launch overhead.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace layerskip::cuda {

class KernelProfiler {
 public:
  struct Entry {
    std::string name;
    int calls = 0;
    double ms = 0;      // total over the calls
    int64_t bytes = 0;  // weight (and cache) bytes the calls read, as the caller declared them
  };

  KernelProfiler() = default;
  ~KernelProfiler();
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  // Forgets earlier marks and records the first event on `stream` (as a graph node when `captured`).
  absl::Status Start(cudaStream_t stream, bool captured);
  // Records an event after the op `name` just enqueued on the stream given to Start.
  absl::Status Mark(const char* name, int64_t bytes);
  // After the stream (or the graph replay) has finished: per name in first-seen order, the summed times.
  absl::StatusOr<std::vector<Entry>> Collect() const;

 private:
  absl::Status Record();
  cudaStream_t stream_ = nullptr;
  bool captured_ = false;
  size_t used_ = 0;
  std::vector<cudaEvent_t> events_;  // events_[0]: Start; events_[i]: after marks_[i - 1]
  std::vector<std::pair<std::string, int64_t>> marks_;
};

}  // namespace layerskip::cuda
