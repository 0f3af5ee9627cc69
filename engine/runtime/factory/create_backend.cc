#include "engine/runtime/factory/create_backend.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/util/status.h"
#if LAYERSKIP_WITH_CUDA
#include "engine/runtime/cuda/cuda_backend.h"
#include "engine/runtime/cuda/cuda_kv_plan.h"
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
  int slots = o.num_slots, capacity = o.capacity;
  if (o.kv_positions > 0 || o.gpu_memory_fraction > 0) {  // planned before the weights take device memory
    cuda::CudaKvPlanRequest r;
    r.device = o.device.index;
    r.first_layer = weights->first_layer;
    r.end_layer = weights->end_layer;
    r.embedding = weights->embed != nullptr;
    r.head = weights->lm_head != nullptr;
    r.weight_bytes = weights->type == WeightType::kF32 ? 4 : 2;
    r.num_slots = o.num_slots;
    r.context = o.capacity;
    r.kv_positions = o.kv_positions;
    r.memory_fraction = o.gpu_memory_fraction;
    KvBudget plan;
    if (o.gpu_memory_fraction > 0) {
      LS_ASSIGN_OR_RETURN(plan, cuda::PlanCudaKvCache(weights->config, r));
    } else {  // positions only: no device-wide share to check (several processes may share the device)
      KvBudgetRequest k;
      k.num_slots = o.num_slots;
      k.context = o.capacity;
      k.bytes_per_position = KvBytesPerPosition(weights->config, weights->first_layer, weights->end_layer, 4);
      k.kv_positions = o.kv_positions;
      LS_ASSIGN_OR_RETURN(plan, PlanKvBudget(k));
    }
    if (plan.num_slots < o.num_slots && o.exact_slots)
      return absl::ResourceExhaustedError(absl::StrCat(o.device.ToString(), ": ", plan.note));
    if (!plan.note.empty()) std::fprintf(stderr, "note: %s: %s\n", o.device.ToString().c_str(), plan.note.c_str());
    slots = plan.num_slots;
    capacity = plan.positions_per_slot;
  }
  LS_ASSIGN_OR_RETURN(auto b, cuda::CudaBackend::Create(*weights, o.device, slots, capacity));
  return std::unique_ptr<Backend>(std::move(b));
#else
  return absl::InternalError("unreachable: CheckDevice accepted a CUDA device without CUDA");
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const LoadedModel& m, const DeviceSpec& device, int num_slots,
                                                       int64_t kv_positions, double gpu_memory_fraction) {
  if (num_slots < 1) return absl::InvalidArgumentError(absl::StrCat("num_slots must be >= 1, got ", num_slots));
  LS_RETURN_IF_ERROR(CheckDevice(device));
  if (device.is_cpu()) return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(m.model.get(), num_slots, m.context));
  BackendOptions o;
  o.device = device;
  o.num_slots = num_slots;
  o.capacity = m.context;
  o.kv_positions = kv_positions;
  o.gpu_memory_fraction = gpu_memory_fraction;
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> b, CreateBackend(m.weights, o));
  if (m.model && !m.model->draft_vocabulary().empty()) LS_RETURN_IF_ERROR(b->SetDraftVocabulary(m.model->draft_vocabulary()));
  return b;
}

}  // namespace layerskip
