#pragma once
// The tokens of one forward call and the checks every backend runs on them before touching memory.
#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace layerskip {

// A token's role, a property of the token and never of the call that computes it: kPrompt for a position
// inside its sequence's prompt, kGenerated for any other (decode steps, drafts, verification rows, and
// generated tokens recomputed after the cache was lost). The CPU backend computes each role's rows on its
// own kernel path (kernels/cpu_features.h CpuKernelPair; docs/engine.md, "Choosing the kernel paths"), so
// every call that computes a token must give it the same role: use RoleOf. The CUDA backend ignores it.
enum class TokenRole : uint8_t { kGenerated = 0, kPrompt = 1 };

// The role of `position` in a sequence whose prompt has `prompt_tokens` tokens.
inline TokenRole RoleOf(int position, int prompt_tokens) {
  return position < prompt_tokens ? TokenRole::kPrompt : TokenRole::kGenerated;
}

// Token i belongs to KV-cache slot slots[i] at position positions[i], with role role(i) (kGenerated
// unless given: a caller that knows no prompt computes as before roles existed). The tokens of a slot must
// be consecutive positions, in order, starting at that slot's cache length.
struct TokenBatch {
  std::vector<int> slots;
  std::vector<int> positions;
  std::vector<TokenRole> roles;  // may be shorter than slots: the missing ones are kGenerated
  int size() const { return static_cast<int>(slots.size()); }
  TokenRole role(int i) const { return i < static_cast<int>(roles.size()) ? roles[i] : TokenRole::kGenerated; }
  void Add(int slot, int position, TokenRole r = TokenRole::kGenerated) {
    roles.resize(slots.size(), TokenRole::kGenerated);
    slots.push_back(slot);
    positions.push_back(position);
    roles.push_back(r);
  }
  // Adds a token of a sequence whose prompt has `prompt_tokens` tokens (its role from RoleOf).
  void AddToken(int slot, int position, int prompt_tokens) { Add(slot, position, RoleOf(position, prompt_tokens)); }
};

// Checks a forward over layers [a, b) of a model with num_layers layers, of which [loaded_first,
// loaded_end) are loaded, against `cache` (any cache with first_layer(), end_layer(), num_slots(),
// capacity() and length(layer, slot): the CPU KvCache and the CUDA one). On success `next` maps each slot
// of the batch to its cache length after the call.
template <typename Cache>
absl::Status CheckTokenBatch(const TokenBatch& batch, int a, int b, int num_layers, int loaded_first, int loaded_end,
                             int max_positions, const Cache& cache, std::map<int, int>* next) {
  if (a < 0 || b > num_layers || a > b)
    return absl::InvalidArgumentError(absl::StrCat("layer range [", a, ",", b, ") is outside [0,", num_layers, "]"));
  if (a == b) return absl::OkStatus();
  if (a < loaded_first || b > loaded_end)
    return absl::FailedPreconditionError(absl::StrCat("layers [", a, ",", b, ") are not all loaded (this shard has [",
                                                      loaded_first, ",", loaded_end, "))"));
  if (a < cache.first_layer() || b > cache.end_layer())
    return absl::FailedPreconditionError(absl::StrCat("the KV cache does not hold layers [", a, ",", b, ")"));
  next->clear();  // per slot: the next expected position, equal in every layer of [a, b)
  for (int i = 0; i < batch.size(); ++i) {
    const int slot = batch.slots[i], pos = batch.positions[i];
    if (slot < 0 || slot >= cache.num_slots())
      return absl::InvalidArgumentError(absl::StrCat("slot ", slot, " is outside the cache's ", cache.num_slots()));
    if (pos >= cache.capacity() || pos >= max_positions)
      return absl::OutOfRangeError(
          absl::StrCat("position ", pos, " is past the context length ", std::min(cache.capacity(), max_positions)));
    auto it = next->find(slot);
    if (it == next->end()) {
      const int len = cache.length(a, slot);
      for (int l = a + 1; l < b; ++l)
        if (cache.length(l, slot) != len)
          return absl::FailedPreconditionError(
              absl::StrCat("slot ", slot, " has different cache lengths in layers ", a, " and ", l));
      it = next->emplace(slot, len).first;
    }
    if (pos != it->second)
      return absl::InvalidArgumentError(
          absl::StrCat("slot ", slot, ": position ", pos, " given where position ", it->second, " comes next"));
    ++it->second;
  }
  return absl::OkStatus();
}

}  // namespace layerskip
