#pragma once
// How many KV-cache slots, of how many positions each, a process can hold: the planner behind
// --gpu-memory-fraction and --kv-cache-positions. Pure arithmetic on the numbers given (the caller measures
// the device's memory, e.g. with cuda::DeviceMemory), so it is tested on the CPU.
//
// The caches are slot-contiguous ([layers, slots, positions, kv_heads, head_dim]), not paged, so a slot must
// hold the longest sequence the budget admits: positions_per_slot = min(context, --kv-cache-positions).
// On a device the memory for the cache is fraction * total - weights - scratch (vLLM's
// gpu_memory_utilization: the share of the device's whole memory this process may use; default 0.9), and
// the slots are as many as fit, at most the wanted number. The host (device_total_bytes == 0) is not
// limited here: slots and positions are as asked.
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/config.h"

namespace layerskip {

struct KvBudgetRequest {
  int num_slots = 1;                // wanted (--num-slots)
  int context = 0;                  // positions per sequence (--max-context, capped by the model)
  int64_t bytes_per_position = 0;   // K and V of every layer this process holds, one position of one slot
  int64_t kv_positions = 0;         // --kv-cache-positions: positions all slots hold together (0: not given)
  double memory_fraction = 0;       // --gpu-memory-fraction in (0, 1] (0: not given -> kDefaultFraction)
  int64_t device_total_bytes = 0;   // 0: the host (no device limit)
  int64_t device_free_bytes = 0;    // free before this process loads anything
  int64_t weight_bytes = 0;         // this process's weights on the device
  int64_t scratch_bytes = 0;        // activations, workspaces, graphs
  bool full_context_slots = false;  // the backend gives every slot the whole context (the CPU KvCache):
                                    // positions_per_slot = context, kv_positions bounds admission only
};

struct KvBudget {
  int num_slots = 0;
  int positions_per_slot = 0;       // the capacity of each slot (<= context)
  int64_t total_positions = 0;      // what running sequences may reserve together (admission budget)
  int64_t bytes = 0;                // num_slots * positions_per_slot * bytes_per_position (allocated)
  std::string note;                 // non-empty when fewer slots than wanted fit (say it to the operator)
};

inline constexpr double kDefaultGpuMemoryFraction = 0.9;

// Sizes from the shapes, for the planner's inputs (a backend that knows its exact sizes passes those):
// K and V of layers [first, end) for one position, `elem_bytes` each (4: f32, 2: bf16).
int64_t KvBytesPerPosition(const LlamaConfig& c, int first_layer, int end_layer, int elem_bytes);
// Weights of layers [first, end) (+ the embedding, + the exit head: final norm and LM head, shared with the
// embedding when tied), matrices at `weight_bytes` per element, norms f32.
int64_t WeightBytes(const LlamaConfig& c, int first_layer, int end_layer, bool embedding, bool head, int weight_bytes);
// A device backend's scratch for batches of up to `max_tokens` rows (f32 activations, q/k/v, attention, MLP,
// logits) plus kScratchHeadroom for the runtime's own allocations (graphs, library workspaces).
int64_t ScratchBytes(const LlamaConfig& c, int max_tokens);
inline constexpr int64_t kScratchHeadroom = int64_t{256} << 20;

// InvalidArgument for out-of-range inputs (naming the flag); ResourceExhausted when not one slot fits, or
// the fraction asks for more than is free, naming the sizes in GiB and the flags that would help.
absl::StatusOr<KvBudget> PlanKvBudget(const KvBudgetRequest& r);

}  // namespace layerskip
