#pragma once
// SwiGLU activation of the Llama MLP: out = silu(gate) * up.
#include <cstdint>

namespace layerskip::cpu {

// gate, up, out: [count] (out may alias gate).
void SwiGlu(const float* gate, const float* up, float* out, int64_t count);

}  // namespace layerskip::cpu
