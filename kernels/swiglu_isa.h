#pragma once
// Internal to the CPU SwiGLU (kernels/swiglu_cpu.cc): the AVX-512 loop (kernels/swiglu_avx512_cpu.cc), the
// AVX2 loop's bits 16 lanes at a time.
#include <cstdint>

namespace layerskip::cpu::avx512 {

// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < count (out may alias gate).
void SwiGluRange(const float* gate, const float* up, float* out, int64_t count);

}  // namespace layerskip::cpu::avx512
