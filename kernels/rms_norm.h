#pragma once
// RMSNorm as in Llama: y = x / sqrt(mean(x^2) + eps) * w.
#include <cstdint>

namespace layerskip::cpu {

// x, y: [n, D] (may alias), w: [D].
void RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps);

}  // namespace layerskip::cpu
