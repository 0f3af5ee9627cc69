#include <cmath>

#include "kernels/rope.h"

namespace layerskip::cpu {

std::vector<float> RopeInvFreq(const RopeParams& c) {
  const int half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // As transformers: 1 / theta ** (2i / dim), in f32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    inv[i] = 1.0f / std::pow(c.theta, exponent);
  }
  if (c.scaling) {
    const RopeScaling& s = *c.scaling;
    const float old_len = static_cast<float>(s.original_max_position_embeddings);
    const float low_wavelen = old_len / s.low_freq_factor;
    const float high_wavelen = old_len / s.high_freq_factor;
    for (float& f : inv) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;  // low frequencies: scaled
      } else if (wavelen >= high_wavelen) {  // medium: interpolate
        const float smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0f - smooth) * f / s.factor + smooth * f;
      }  // high frequencies: unchanged
    }
  }
  return inv;
}

RopeTable::RopeTable(const RopeParams& rope, int max_positions)
    : half_(rope.head_dim / 2), max_positions_(max_positions), inv_freq_(RopeInvFreq(rope)) {
  cos_.resize(static_cast<size_t>(max_positions) * half_);
  sin_.resize(cos_.size());
  for (int p = 0; p < max_positions; ++p) {
    for (int i = 0; i < half_; ++i) {
      const float angle = static_cast<float>(p) * inv_freq_[i];
      cos_[static_cast<size_t>(p) * half_ + i] = std::cos(angle);
      sin_[static_cast<size_t>(p) * half_ + i] = std::sin(angle);
    }
  }
}

void ApplyRope(float* v, int heads, int head_dim, const RopeTable& table, int pos) {
  const int half = head_dim / 2;
  const float* c = table.cos(pos);
  const float* s = table.sin(pos);
  for (int h = 0; h < heads; ++h) {
    float* x = v + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * c[i] - b * s[i];
      x[i + half] = b * c[i] + a * s[i];
    }
  }
}

}  // namespace layerskip::cpu
