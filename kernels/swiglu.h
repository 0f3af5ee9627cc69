#pragma once
// SwiGLU activation of the Llama MLP: out = silu(gate) * up.
#include <cstdint>

#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// gate, up, out: [count] (out may alias gate). Element-wise, so splitting it over `pool` (may be null)
// changes no result.
void SwiGlu(const float* gate, const float* up, float* out, int64_t count, ThreadPool* pool = nullptr);

}  // namespace layerskip::cpu
