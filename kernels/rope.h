#pragma once
// Rotary position embedding, Hugging Face Llama convention (rotate_half: pairs (i, i + hd/2)),
// with optional llama3 frequency scaling.
#include <cstdint>
#include <vector>

#include "engine/core/rope_params.h"

namespace layerskip::cpu {

// cos/sin for positions [0, max_positions): [max_positions, head_dim/2] each.
class RopeTable {
 public:
  RopeTable(const RopeParams& rope, int max_positions);
  int max_positions() const { return max_positions_; }
  const float* cos(int pos) const { return cos_.data() + static_cast<size_t>(pos) * half_; }
  const float* sin(int pos) const { return sin_.data() + static_cast<size_t>(pos) * half_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }  // [head_dim/2]

 private:
  int half_, max_positions_;
  std::vector<float> inv_freq_, cos_, sin_;
};

// Inverse frequencies [head_dim/2], with llama3 scaling applied when configured.
std::vector<float> RopeInvFreq(const RopeParams& rope);

// Rotates `heads` vectors of head_dim at one position in place: v is [heads, head_dim].
void ApplyRope(float* v, int heads, int head_dim, const RopeTable& table, int pos);

}  // namespace layerskip::cpu
