#include <cmath>

#include "kernels/swiglu.h"

namespace layerskip::cpu {
namespace {

// out[i] = silu(gate[i]) * up[i]; out may alias gate.
void SwiGluRange(const float* gate, const float* up, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace

void SwiGluRows(float* gate, const float* up, int64_t count) { SwiGluRange(gate, up, gate, count); }

void SwiGlu(const float* gate, const float* up, float* out, int64_t count, ThreadPool* pool) {
  auto body = [&](int64_t a, int64_t b) { SwiGluRange(gate + a, up + a, out + a, b - a); };
  // About 20 ns per element (scalar exp): worth waking the pool above ~16k elements (a decode step of a
  // 1B model has 8192 per token).
  constexpr int64_t kMinParallel = int64_t{1} << 14;
  if (pool && count >= kMinParallel) pool->ParallelFor(count, 4096, body);
  else body(0, count);
}

}  // namespace layerskip::cpu
