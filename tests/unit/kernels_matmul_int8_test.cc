// int8 weights: quantisation round trip, every ISA path against the scalar reference (bitwise), the error
// against the f32 product, and bitwise batch invariance.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/model/quantize_int8.h"
#include "gtest/gtest.h"
#include "kernels/matmul.h"
#include "kernels/matmul_int8_cpu.h"
#include "tests/support/random_vector.h"

namespace layerskip {
namespace {

using ::layerskip::testing::RandomVector;

std::unique_ptr<Matrix> RandomInt8(int64_t rows, int64_t cols, uint32_t seed, std::vector<float>* original = nullptr) {
  std::vector<float> v = RandomVector(rows * cols, seed, 0.05f);
  if (rows > 2) std::fill(v.begin() + cols, v.begin() + 2 * cols, 0.0f);  // an all-zero row (zero scales)
  if (original) *original = v;
  return QuantizeInt8(rows, cols, [&](int64_t r, float* out) { std::copy_n(v.data() + r * cols, cols, out); }, 2);
}

std::vector<cpu::Int8Path> SupportedPaths() {
  std::vector<cpu::Int8Path> out;
  for (auto p : {cpu::Int8Path::kScalar, cpu::Int8Path::kAvx2, cpu::Int8Path::kAvx512Vnni})
    if (cpu::Int8PathSupported(p)) out.push_back(p);
  return out;
}

TEST(QuantizeInt8, RoundTripWithinHalfAStep) {
  const int64_t rows = 7, cols = 300;  // a partial group and a partial 256-column block
  std::vector<float> v;
  auto m = RandomInt8(rows, cols, 1, &v);
  ASSERT_EQ(m->type(), WeightType::kInt8);
  EXPECT_EQ(m->int8_stride(), 512);
  EXPECT_EQ(m->bytes(), size_t(rows * 512 + rows * 16 * 4));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float scale = m->scales()[r * 16 + c / 32];
      EXPECT_LE(std::fabs(m->At(r, c) - v[r * cols + c]), scale * 0.5f + 1e-7f) << r << "," << c;
    }
  // Padding columns and groups are zero.
  EXPECT_EQ(m->int8()[Int8Position(cols)], 128);
  EXPECT_EQ(m->scales()[15], 0.0f);
  EXPECT_EQ(m->scales()[1 * 16], 0.0f);  // the all-zero row
}

class MatmulInt8Test : public ::testing::TestWithParam<int> {};

// Every path is the scalar reference's bits (the int32 group sums are exact; the f32 steps are the same).
TEST_P(MatmulInt8Test, PathsMatchScalarReferenceBitwise) {
  const int64_t K = GetParam(), n = 5, M = 37;
  auto w = RandomInt8(M, K, 2);
  std::vector<float> x = RandomVector(n * K, 3);
  std::vector<float> ref(n * M), y(n * M);
  ThreadPool pool(2);
  cpu::MatmulInt8(x.data(), n, *w, ref.data(), &pool, cpu::Int8Path::kScalar);
  for (cpu::Int8Path p : SupportedPaths()) {
    std::fill(y.begin(), y.end(), -1.0f);
    cpu::MatmulInt8(x.data(), n, *w, y.data(), &pool, p);
    EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), y.size() * sizeof(float))) << cpu::Int8PathName(p);
  }
  // The Matmul dispatch takes the int8 kernel for int8 matrices.
  cpu::Matmul(x.data(), n, *w, y.data(), &pool);
  EXPECT_EQ(0, std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)));
}

// Against the exact product of the unquantised weights: each factor carries at most half a step
// (max / 254) of relative error per group, so |error| <= ~(1/127) * sum |x| |w|; 1/100 leaves a little room
// and still catches a wrong layout or scale (errors of order sum |x| |w|).
TEST_P(MatmulInt8Test, CloseToF32Product) {
  const int64_t K = GetParam(), n = 3, M = 29;
  std::vector<float> v;
  auto w = RandomInt8(M, K, 4, &v);
  std::vector<float> x = RandomVector(n * K, 5), y(n * M);
  cpu::MatmulInt8(x.data(), n, *w, y.data(), nullptr);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < M; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        ref += double(x[i * K + k]) * v[j * K + k];
        mag += std::fabs(double(x[i * K + k]) * v[j * K + k]);
      }
      EXPECT_LE(std::fabs(y[i * M + j] - ref), mag / 100 + 1e-6) << i << "," << j;
      if (mag > 0) worst = std::max(worst, std::fabs(y[i * M + j] - ref) / mag);
    }
  RecordProperty("worst_error_over_abs_sum", std::to_string(worst));
}

// Every output row is the same bits alone or in any batch, at any position, with any thread count.
TEST_P(MatmulInt8Test, BatchInvariantBitwise) {
  const int64_t K = GetParam(), M = 301;
  auto w = RandomInt8(M, K, 6);
  std::vector<float> x = RandomVector(33 * K, 7);
  for (cpu::Int8Path p : SupportedPaths()) {
    ThreadPool one(1);
    std::vector<float> alone(33 * M);
    for (int64_t i = 0; i < 33; ++i) cpu::MatmulInt8(x.data() + i * K, 1, *w, alone.data() + i * M, &one, p);
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      for (int64_t n : {2, 3, 5, 8, 33}) {
        for (int64_t start : {int64_t{0}, 33 - n}) {
          std::vector<float> y(n * M);
          cpu::MatmulInt8(x.data() + start * K, n, *w, y.data(), &pool, p);
          ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + start * M, n * M * sizeof(float)))
              << cpu::Int8PathName(p) << " n=" << n << " start=" << start << " threads=" << threads;
        }
      }
    }
  }
}

// Prefill tiles (up to 4 tokens x 4 rows on VNNI, and the 3-, 2- and 1-token rest): every n from 1 to 70 on
// every path and 1-3 threads gives each row the bits of the scalar reference's 1-token product. M = 37 leaves
// 1-row and 2-row tiles at the end of each row block.
TEST_P(MatmulInt8Test, PrefillTilesInvariantOverTokenCounts) {
  const int64_t K = GetParam(), M = 37, N = 70;
  auto w = RandomInt8(M, K, 8);
  std::vector<float> x = RandomVector(N * K, 9);
  std::vector<float> alone(N * M);
  for (int64_t i = 0; i < N; ++i)
    cpu::MatmulInt8(x.data() + i * K, 1, *w, alone.data() + i * M, nullptr, cpu::Int8Path::kScalar);
  for (cpu::Int8Path p : SupportedPaths())
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int64_t n = 1; n <= N; ++n) {
        const int64_t start = (n * 7) % (N - n + 1);
        std::vector<float> y(n * M, -1.0f);
        cpu::MatmulInt8(x.data() + start * K, n, *w, y.data(), &pool, p);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + start * M, n * M * sizeof(float)))
            << cpu::Int8PathName(p) << " n=" << n << " start=" << start << " threads=" << threads;
      }
    }
}

// The activations' quantisation (vectorised on the AVX2 and VNNI paths, the plain loop on the scalar one)
// on groups that test its cases: all zero, a NaN, an infinity, values too small for 127 / max, rounding ties
// (max 127: x * 127 / max = x), huge values, and a partial last group.
TEST(MatmulInt8EdgeTest, ActivationGroupsMatchScalarReference) {
  const int64_t K = 9 * 32 + 5, M = 6;
  auto w = RandomInt8(M, K, 10);
  std::vector<float> x = RandomVector(K, 11);
  for (int k = 0; k < 32; ++k) {
    x[k] = 0.0f;                                          // group 0: zeros
    x[3 * 32 + k] = 1e-35f * (k - 16);                    // group 3: tiny
    x[4 * 32 + k] = (k == 0) ? 127.0f : 0.5f * (k - 16);  // group 4: ties at every odd half
    x[5 * 32 + k] = 3e38f * ((k % 3) - 1);                // group 5: huge
  }
  x[32 + 7] = NAN;        // group 1
  x[2 * 32 + 31] = INFINITY;  // group 2
  std::vector<float> ref(M), y(M);
  cpu::MatmulInt8(x.data(), 1, *w, ref.data(), nullptr, cpu::Int8Path::kScalar);
  for (cpu::Int8Path p : SupportedPaths()) {
    cpu::MatmulInt8(x.data(), 1, *w, y.data(), nullptr, p);
    for (int64_t j = 0; j < M; ++j)
      EXPECT_TRUE((std::isnan(ref[j]) && std::isnan(y[j])) || std::memcmp(&ref[j], &y[j], 4) == 0)
          << cpu::Int8PathName(p) << " row " << j << ": " << y[j] << " vs " << ref[j];
  }
  // Without the non-finite groups every output is finite, and still the reference's bits.
  x[32 + 7] = 1.0f, x[2 * 32 + 31] = -2.0f;
  cpu::MatmulInt8(x.data(), 1, *w, ref.data(), nullptr, cpu::Int8Path::kScalar);
  for (cpu::Int8Path p : SupportedPaths()) {
    cpu::MatmulInt8(x.data(), 1, *w, y.data(), nullptr, p);
    for (int64_t j = 0; j < M; ++j) {
      EXPECT_TRUE(std::isfinite(y[j])) << cpu::Int8PathName(p);
      EXPECT_EQ(0, std::memcmp(&ref[j], &y[j], 4)) << cpu::Int8PathName(p) << " row " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Widths, MatmulInt8Test, ::testing::Values(16, 100, 256, 300, 2048));

}  // namespace
}  // namespace layerskip
