#include "engine/runtime/kv_budget.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace layerskip {
namespace {

std::string GiB(double bytes) { return absl::StrFormat("%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

}  // namespace

int64_t KvBytesPerPosition(const LlamaConfig& c, int first_layer, int end_layer, int elem_bytes) {
  return int64_t{2} * std::max(0, end_layer - first_layer) * c.kv_dim() * elem_bytes;
}

int64_t WeightBytes(const LlamaConfig& c, int first_layer, int end_layer, bool embedding, bool head, int weight_bytes) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t per_layer = (D * c.q_dim() * 2 + D * c.kv_dim() * 2 + 3 * D * F) * weight_bytes + 2 * D * 4;
  int64_t bytes = per_layer * std::max(0, end_layer - first_layer);
  if (embedding) bytes += V * D * weight_bytes;
  if (head) bytes += D * 4 + ((c.tie_word_embeddings && embedding) ? 0 : V * D * weight_bytes);
  return bytes;
}

int64_t ScratchBytes(const LlamaConfig& c, int max_tokens) {
  const int64_t per_row = 3LL * c.hidden_size + 2LL * c.q_dim() + 2LL * c.kv_dim() + 2LL * c.intermediate_size +
                          c.vocab_size;
  return int64_t{4} * per_row * std::max(1, max_tokens) + kScratchHeadroom;
}

absl::StatusOr<KvBudget> PlanKvBudget(const KvBudgetRequest& r) {
  if (r.num_slots < 1) return absl::InvalidArgumentError(absl::StrCat("--num-slots must be >= 1, got ", r.num_slots));
  if (r.context < 1) return absl::InvalidArgumentError(absl::StrCat("--max-context must be >= 1, got ", r.context));
  if (r.bytes_per_position < 1)
    return absl::InvalidArgumentError(absl::StrCat("bytes per KV position must be >= 1, got ", r.bytes_per_position));
  if (r.kv_positions < 0)
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-positions must be >= 0, got ", r.kv_positions));
  if (!(r.memory_fraction >= 0 && r.memory_fraction <= 1))
    return absl::InvalidArgumentError(absl::StrCat("--gpu-memory-fraction must be in (0, 1], got ", r.memory_fraction));
  if (r.weight_bytes < 0 || r.scratch_bytes < 0 || r.device_total_bytes < 0 || r.device_free_bytes < 0)
    return absl::InvalidArgumentError("memory sizes must be >= 0");

  KvBudget b;
  b.positions_per_slot = r.kv_positions > 0 && !r.full_context_slots ? static_cast<int>(std::min<int64_t>(r.context, r.kv_positions)) : r.context;
  b.num_slots = r.num_slots;
  if (r.device_total_bytes > 0) {
    const double fraction = r.memory_fraction > 0 ? r.memory_fraction : kDefaultGpuMemoryFraction;
    const double allowed = fraction * static_cast<double>(r.device_total_bytes);
    if (allowed > static_cast<double>(r.device_free_bytes))
      return absl::ResourceExhaustedError(absl::StrCat(
          "--gpu-memory-fraction ", fraction, " of the device's ", GiB(r.device_total_bytes), " is ", GiB(allowed),
          " but only ", GiB(r.device_free_bytes), " is free: lower --gpu-memory-fraction or free the device"));
    const double for_kv = allowed - static_cast<double>(r.weight_bytes) - static_cast<double>(r.scratch_bytes);
    const double slot_bytes = static_cast<double>(b.positions_per_slot) * static_cast<double>(r.bytes_per_position);
    const double fit = for_kv > 0 ? std::floor(for_kv / slot_bytes) : 0.0;
    if (fit < 1)
      return absl::ResourceExhaustedError(absl::StrCat(
          "no KV-cache slot fits: ", GiB(allowed), " (--gpu-memory-fraction ", fraction, ") less weights ",
          GiB(r.weight_bytes), " and scratch ", GiB(r.scratch_bytes), " leaves ", GiB(std::max(0.0, for_kv)),
          ", one slot of ", b.positions_per_slot, " positions needs ", GiB(slot_bytes),
          ": raise --gpu-memory-fraction, lower --max-context or --kv-cache-positions, or use --dtype bf16"));
    if (fit < r.num_slots) {
      b.num_slots = static_cast<int>(fit);
      b.note = absl::StrCat("the KV cache holds ", b.num_slots, " of the ", r.num_slots, " slots asked for (",
                            b.positions_per_slot, " positions each) in ", GiB(for_kv),
                            " (--gpu-memory-fraction ", fraction, " less weights and scratch)");
    }
  }
  const int64_t held = static_cast<int64_t>(b.num_slots) * b.positions_per_slot;
  b.total_positions = r.kv_positions > 0 ? std::min(r.kv_positions, held) : held;
  b.bytes = held * r.bytes_per_position;
  return b;
}

}  // namespace layerskip
