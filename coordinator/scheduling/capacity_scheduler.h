#pragma once
// Slots and KV-cache positions. A request reserves a slot and min(prompt + max_tokens, context) positions
// when it is admitted and gives them back when it ends, so the running batch never needs more cache than
// there is: a request that does not fit now waits; one that can never fit is rejected at submission.
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace layerskip::coordinator {

class CapacityScheduler {
 public:
  // num_slots sequences of at most `context` positions each; kv_positions: the positions all running
  // sequences may hold together (0: num_slots * context, i.e. every slot full).
  CapacityScheduler(int num_slots, int context, int64_t kv_positions);

  // Positions a request with this prompt and max_tokens reserves.
  int64_t Need(int prompt_tokens, int max_tokens) const;
  // ResourceExhausted when `need` positions exceed the whole budget (it could never be admitted).
  absl::Status CheckCanEverFit(int64_t need) const;
  // A free slot with `need` positions reserved, or nullopt when it does not fit now.
  std::optional<int> TryAdmit(int64_t need);
  // Returns the slot and its positions.
  void Release(int slot, int64_t need);

  int free_slots() const { return static_cast<int>(free_.size()); }
  int64_t reserved() const { return reserved_; }
  int64_t budget() const { return budget_; }
  double usage() const { return budget_ ? static_cast<double>(reserved_) / budget_ : 0.0; }  // in [0, 1]

 private:
  int context_;
  int64_t budget_;
  int64_t reserved_ = 0;
  std::vector<int> free_;  // free slots, lowest last
};

}  // namespace layerskip::coordinator
