#include "engine/runtime/factory/create_backend.h"

#include "absl/strings/str_cat.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/util/status.h"
#if LAYERSKIP_WITH_CUDA
#include "engine/runtime/cuda/cuda_backend.h"
#endif

namespace layerskip {

absl::Status CheckDevice(const DeviceSpec& device) {
  if (device.is_cpu()) return absl::OkStatus();
#if LAYERSKIP_WITH_CUDA
  return cuda::ProbeDevice(device.index);
#else
  return absl::FailedPreconditionError(absl::StrCat(
      device.ToString(), ": this binary was built without CUDA (rebuild with cmake -DLAYERSKIP_CUDA=ON)"));
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const ModelWeights> weights,
                                                       const BackendOptions& o) {
  if (o.num_slots < 1 || o.capacity < 2)
    return absl::InvalidArgumentError(absl::StrCat("a KV cache needs >= 1 slot and >= 2 positions, got ", o.num_slots,
                                                   " x ", o.capacity));
  LS_RETURN_IF_ERROR(CheckDevice(o.device));
  if (o.device.is_cpu()) return std::unique_ptr<Backend>(CpuBackend::Create(std::move(weights), o.num_slots, o.capacity, o.threads));
#if LAYERSKIP_WITH_CUDA
  LS_ASSIGN_OR_RETURN(auto b, cuda::CudaBackend::Create(*weights, o.device, o.num_slots, o.capacity));
  return std::unique_ptr<Backend>(std::move(b));
#else
  return absl::InternalError("unreachable: CheckDevice accepted a CUDA device without CUDA");
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const LoadedModel& m, const DeviceSpec& device, int num_slots) {
  if (num_slots < 1) return absl::InvalidArgumentError(absl::StrCat("num_slots must be >= 1, got ", num_slots));
  LS_RETURN_IF_ERROR(CheckDevice(device));
  if (device.is_cpu()) return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(m.model.get(), num_slots, m.context));
  BackendOptions o;
  o.device = device;
  o.num_slots = num_slots;
  o.capacity = m.context;
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> b, CreateBackend(m.weights, o));
  if (m.model && !m.model->draft_vocabulary().empty()) LS_RETURN_IF_ERROR(b->SetDraftVocabulary(m.model->draft_vocabulary()));
  return b;
}

}  // namespace layerskip
