#include "engine/runtime/cuda/cuda_kv_plan.h"

#include "engine/runtime/cuda/device_memory.h"
#include "engine/util/status.h"

namespace layerskip::cuda {

absl::StatusOr<KvBudget> PlanCudaKvCache(const LlamaConfig& c, const CudaKvPlanRequest& r) {
  LS_ASSIGN_OR_RETURN(DeviceMemory mem, QueryDeviceMemory(r.device));
  KvBudgetRequest k;
  k.num_slots = r.num_slots;
  k.context = r.context;
  k.bytes_per_position = KvBytesPerPosition(c, r.first_layer, r.end_layer, r.kv_elem_bytes);
  k.kv_positions = r.kv_positions;
  k.memory_fraction = r.memory_fraction;
  k.device_total_bytes = mem.total_bytes;
  k.device_free_bytes = mem.free_bytes;
  k.weight_bytes = WeightBytes(c, r.first_layer, r.end_layer, r.embedding, r.head, r.weight_bytes);
  k.scratch_bytes = ScratchBytes(c, r.max_tokens);
  return PlanKvBudget(k);
}

}  // namespace layerskip::cuda
