#include "kernels/rms_norm.h"

#include <cmath>

#include "kernels/simd.h"

namespace layerskip::cpu {

void RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * D;
    float* yi = y + i * D;
    const float ms = DotF32(xi, xi, static_cast<int>(D)) / static_cast<float>(D);
    const float inv = 1.0f / std::sqrt(ms + eps);
    for (int64_t k = 0; k < D; ++k) yi[k] = w[k] * (xi[k] * inv);
  }
}

}  // namespace layerskip::cpu
