#include "coordinator/scheduling/capacity_scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator {

CapacityScheduler::CapacityScheduler(int num_slots, int context, int64_t kv_positions)
    : context_(context), budget_(static_cast<int64_t>(num_slots) * context) {
  if (kv_positions > 0) budget_ = std::min(budget_, kv_positions);
  for (int s = num_slots - 1; s >= 0; --s) free_.push_back(s);
}

int64_t CapacityScheduler::Need(int prompt_tokens, int max_tokens) const {
  return std::min<int64_t>(static_cast<int64_t>(prompt_tokens) + max_tokens, context_);
}

absl::Status CapacityScheduler::CheckCanEverFit(int64_t need) const {
  if (need > budget_)
    return absl::ResourceExhaustedError(absl::StrCat("the request needs ", need, " KV-cache positions; the server has ",
                                                     budget_, " in all"));
  return absl::OkStatus();
}

std::optional<int> CapacityScheduler::TryAdmit(int64_t need) {
  if (free_.empty() || reserved_ + need > budget_) return std::nullopt;
  const int slot = free_.back();
  free_.pop_back();
  reserved_ += need;
  return slot;
}

void CapacityScheduler::Release(int slot, int64_t need) {
  reserved_ -= need;
  free_.push_back(slot);
  std::sort(free_.begin(), free_.end(), std::greater<int>());  // lowest slot is reused first
}

}  // namespace layerskip::coordinator
