#pragma once
// The KV-cache plan of a CUDA backend (--gpu-memory-fraction, --kv-cache-positions): the device's memory
// now (call it BEFORE uploading the weights), the weights and scratch from the shapes, and the planner
// (engine/runtime/kv_budget.h). The backend then allocates plan.num_slots x plan.positions_per_slot.
#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/runtime/kv_budget.h"

namespace layerskip::cuda {

struct CudaKvPlanRequest {
  int device = 0;                     // cuda:N
  int first_layer = 0, end_layer = 0; // the layers this backend holds
  bool embedding = true, head = true;
  int weight_bytes = 2;               // per weight element: 2 (bf16) or 4 (f32)
  int kv_elem_bytes = 4;              // per K/V element: 4 (f32) or 2 (bf16 KV)
  int max_tokens = 256;               // rows of the largest batch the scratch is sized for
  int num_slots = 1, context = 0;     // wanted slots, positions per sequence
  int64_t kv_positions = 0;           // --kv-cache-positions (0: not given)
  double memory_fraction = 0;         // --gpu-memory-fraction (0: the planner's default)
};

absl::StatusOr<KvBudget> PlanCudaKvCache(const LlamaConfig& c, const CudaKvPlanRequest& r);

}  // namespace layerskip::cuda
