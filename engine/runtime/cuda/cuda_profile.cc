#include "engine/runtime/cuda/cuda_profile.h"

#include "kernels/cuda_common.h"

namespace layerskip::cuda {

KernelProfiler::~KernelProfiler() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

absl::Status KernelProfiler::Record() {
  if (used_ == events_.size()) {
    cudaEvent_t e;
    LS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
    events_.push_back(e);
  }
  cudaEvent_t e = events_[used_++];
  if (captured_) {
    LS_CUDA_RETURN_IF_ERROR(cudaEventRecordWithFlags(e, stream_, cudaEventRecordExternal));
  } else {
    LS_CUDA_RETURN_IF_ERROR(cudaEventRecord(e, stream_));
  }
  return absl::OkStatus();
}

absl::Status KernelProfiler::Start(cudaStream_t stream, bool captured) {
  stream_ = stream;
  captured_ = captured;
  used_ = 0;
  marks_.clear();
  return Record();
}

absl::Status KernelProfiler::Mark(const char* name, int64_t bytes) {
  if (used_ == 0) return absl::FailedPreconditionError("KernelProfiler::Mark before Start");
  marks_.emplace_back(name, bytes);
  return Record();
}

absl::StatusOr<std::vector<KernelProfiler::Entry>> KernelProfiler::Collect() const {
  std::vector<Entry> out;
  for (size_t i = 0; i < marks_.size(); ++i) {
    float ms = 0;
    LS_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
    Entry* e = nullptr;
    for (Entry& o : out)
      if (o.name == marks_[i].first) e = &o;
    if (!e) {
      out.push_back({marks_[i].first});
      e = &out.back();
    }
    ++e->calls;
    e->ms += ms;
    e->bytes += marks_[i].second;
  }
  return out;
}

}  // namespace layerskip::cuda
