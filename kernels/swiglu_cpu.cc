#include <immintrin.h>

#include "kernels/cpu_features.h"
#include "kernels/exp_simd.h"
#include "kernels/swiglu.h"
#include "kernels/swiglu_isa.h"

namespace layerskip::cpu {
namespace {

// g / (1 + exp(-g)) * u per lane (kernels/exp_simd.h's exp).
inline __m256 SwiGlu8(__m256 g, __m256 u) {
  const __m256 e = Exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

// out[i] = silu(gate[i]) * up[i]; out may alias gate. The tail goes through the same vector code. The
// AVX-512 paths run the same lane arithmetic 16 wide (kernels/swiglu_avx512_cpu.cc): the same bits.
void SwiGluRange(const float* gate, const float* up, float* out, int64_t count) {
  if (ActiveCpuKernels() != CpuKernels::kAvx2) return avx512::SwiGluRange(gate, up, out, count);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm256_storeu_ps(out + i, SwiGlu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < count) {
    const int left = static_cast<int>(count - i);
    StorePartial8(out + i, left, SwiGlu8(LoadPartial8(gate + i, left), LoadPartial8(up + i, left)));
  }
}

}  // namespace

void SwiGluRows(float* gate, const float* up, int64_t count) { SwiGluRange(gate, up, gate, count); }

void SwiGlu(const float* gate, const float* up, float* out, int64_t count, ThreadPool* pool) {
  auto body = [&](int64_t a, int64_t b) { SwiGluRange(gate + a, up + a, out + a, b - a); };
  // About 1 ns per element (vector exp): worth waking the pool above ~16k elements (a decode step of a
  // 1B model has 8192 per token).
  constexpr int64_t kMinParallel = int64_t{1} << 14;
  if (pool && count >= kMinParallel) pool->ParallelFor(count, 4096, body);
  else body(0, count);
}

}  // namespace layerskip::cpu
