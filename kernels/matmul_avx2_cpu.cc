// The matmul on AVX2 + FMA (the baseline every x86-64 build targets): 8-lane f32 accumulators, blocks of
// 16 columns, register tiles of up to 2 tokens, a scalar tail for K % 16 columns.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "engine/util/bf16.h"
#include "kernels/aligned_buffer.h"
#include "kernels/matmul_isa.h"
#include "kernels/simd.h"
#include "kernels/swiglu.h"

#define LAYERSKIP_MATMUL_ISA avx2
namespace layerskip::cpu::avx2 {

// f32 W: w0 = w[0..7], w1 = w[8..15]. bf16 W: one 32-byte load widened by interleaving with zeros, which
// works within 128-bit lanes: w0 = w[0..3, 8..11], w1 = w[4..7, 12..15]; x is permuted the same way
// beforehand (PrepareX), so the dot product is unchanged in value and the widening costs no shifts.
struct Isa {
  using V = __m256;
  using X = float;
  using Mask = int;
  static constexpr int kBlock = 16;
  static constexpr bool kMaskedTail = false;
  static constexpr int kTokens = 2;
  static constexpr Mask kFullMask = 0;
  static constexpr int TileRows(int T) { return T == 1 ? 4 : 3; }
  static Mask TailMask(int64_t) { return 0; }
  static V Zero() { return _mm256_setzero_ps(); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static V Fma(V x, V w, V acc) { return _mm256_fmadd_ps(x, w, acc); }
  static float Sum(V v) { return HorizontalSum(v); }
  static void Sum8(const V* v, float* out) { _mm256_storeu_ps(out, HorizontalSum8(v)); }
  template <int H>
  static V LoadX(const float* x) { return _mm256_loadu_ps(x + 8 * H); }
  template <int H>
  static V LoadW(const float* w, Mask) { return _mm256_loadu_ps(w + 8 * H); }
  template <int H>
  static V LoadW(const uint16_t* w, Mask) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    return _mm256_castsi256_ps(H == 0 ? _mm256_unpacklo_epi16(_mm256_setzero_si256(), v)
                                      : _mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
  }
  static float ScalarW(const float* w) { return *w; }
  static float ScalarW(const uint16_t* w) { return Bf16ToF32(*w); }
  // x [n, K] -> out [n, K]: a copy (f32 W), or each block of 16 reordered [0..3, 8..11, 4..7, 12..15]
  // (bf16 W); the tail past the last full block stays in place.
  template <typename W>
  static void PrepareX(const float* x, int64_t n, int64_t K, int64_t, float* out) {
    if constexpr (std::is_same_v<W, float>) {
      std::memcpy(out, x, sizeof(float) * static_cast<size_t>(n * K));
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = x + i * K;
        float* oi = out + i * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
          const __m256 a = _mm256_loadu_ps(xi + k), b = _mm256_loadu_ps(xi + k + 8);
          _mm256_storeu_ps(oi + k, _mm256_permute2f128_ps(a, b, 0x20));
          _mm256_storeu_ps(oi + k + 8, _mm256_permute2f128_ps(a, b, 0x31));
        }
        for (; k < K; ++k) oi[k] = xi[k];
      }
    }
  }
};

}  // namespace layerskip::cpu::avx2

#include "kernels/matmul_tiles.h"

namespace layerskip::cpu {

void MatmulGroupAvx2(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool) {
  if (jobs[0].w->type() == WeightType::kF32) avx2::RunGroup<avx2::Isa, float>(x, n, jobs, num_jobs, pool);
  else avx2::RunGroup<avx2::Isa, uint16_t>(x, n, jobs, num_jobs, pool);
}

}  // namespace layerskip::cpu
