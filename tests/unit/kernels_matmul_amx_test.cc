// The `amx` matmul path (kernels/matmul_amx_cpu.cc) on shapes AMX tiles do not divide: row counts that are
// not multiples of 16 (partial row tiles), widths that are not multiples of 32 (a partial column block),
// widths over one K chunk, and 1..300 tokens (partial token tiles). Against a double-precision reference,
// and bitwise: every token's outputs are the bits of its 1-token product, for any n, thread count and job
// grouping. Skipped, with the reason, on hosts without AMX-BF16 or where Linux refuses the tiles.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/util/bf16.h"
#include "gtest/gtest.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul.h"
#include "kernels/swiglu.h"
#include "tests/support/random_vector.h"

namespace layerskip {
namespace {

using cpu::CpuKernels;
using ::layerskip::testing::RandomVector;

std::unique_ptr<Matrix> RandomBf16(int64_t rows, int64_t cols, uint32_t seed) {
  auto m = std::make_unique<Matrix>(WeightType::kBF16, rows, cols);
  const std::vector<float> v = RandomVector(rows * cols, seed, 0.1f);
  for (int64_t i = 0; i < rows * cols; ++i) static_cast<uint16_t*>(m->data())[i] = F32ToBf16(v[i]);
  return m;
}

class AmxMatmulTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto parsed = cpu::ParseCpuKernels("amx", cpu::HostCpuFeatures());
    if (!parsed.ok()) GTEST_SKIP() << parsed.status().message();
    cpu::SetCpuKernelsForTesting(CpuKernels::kAmx);
  }
  void TearDown() override { cpu::ResetCpuKernelsForTesting(); }
};

// Each token alone (n = 1, one thread): what every batched product must reproduce bitwise.
std::vector<float> Alone(const std::vector<float>& x, int64_t n, const Matrix& w) {
  const int64_t K = w.cols(), M = w.rows();
  ThreadPool one(1);
  std::vector<float> y(n * M);
  for (int64_t t = 0; t < n; ++t) cpu::Matmul(x.data() + t * K, 1, w, y.data() + t * M, &one);
  return y;
}

TEST_F(AmxMatmulTest, OddShapesMatchReferenceAndAreBatchInvariant) {
  const int64_t kMaxN = 70;
  const std::pair<int64_t, int64_t> shapes[] = {{1, 32},   {16, 32},  {17, 40},  {33, 100},
                                                {47, 544}, {64, 1000}, {20, 2056}, {5, 7}};
  for (const auto& [M, K] : shapes) {
    auto w = RandomBf16(M, K, static_cast<uint32_t>(M * 7 + K));
    const std::vector<float> x = RandomVector(kMaxN * K, static_cast<uint32_t>(K));
    const std::vector<float> alone = Alone(x, kMaxN, *w);
    // x is rounded to bf16: a relative error of 2^-9 per product at most.
    for (int64_t t = 0; t < kMaxN; ++t)
      for (int64_t j = 0; j < M; ++j) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double p = static_cast<double>(x[t * K + k]) * w->At(j, k);
          ref += p;
          mag += std::abs(p);
        }
        ASSERT_NEAR(alone[t * M + j], ref, 1e-4 * (1 + std::abs(ref)) + 4e-3 * mag)
            << "M=" << M << " K=" << K << " token " << t << " row " << j;
      }
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int64_t n = 1; n <= kMaxN; ++n) {
        std::vector<float> y(n * M);
        const int64_t start = (n * 13) % (kMaxN - n + 1);  // tokens at varying offsets of x
        cpu::Matmul(x.data() + start * K, n, *w, y.data(), &pool);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + start * M, y.size() * sizeof(float)))
            << "M=" << M << " K=" << K << " n=" << n << " threads=" << threads;
      }
    }
  }
}

// Long prompts split K into chunks (C tiles stored and reloaded between them; short ones take the width
// at once): still the bits of 1-token products.
TEST_F(AmxMatmulTest, KChunksOfLongPromptsBitwiseEqualAlone) {
  const int64_t M = 33, K = 8200, kMaxN = 300;  // K: several chunks at n >= 128, and a partial last block
  auto w = RandomBf16(M, K, 31);
  const std::vector<float> x = RandomVector(kMaxN * K, 32);
  const std::vector<float> alone = Alone(x, kMaxN, *w);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (int64_t n : {17, 129, 256, 300}) {
      std::vector<float> y(n * M);
      cpu::Matmul(x.data() + (kMaxN - n) * K, n, *w, y.data(), &pool);
      ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + (kMaxN - n) * M, y.size() * sizeof(float)))
          << "n=" << n << " threads=" << threads;
    }
  }
}

// MatmulMany (odd row counts of one width) and MatmulSwiGlu give every token the bits of its 1-token
// products, on 1-3 threads.
TEST_F(AmxMatmulTest, GroupedJobsBitwiseEqualAlone) {
  const int64_t K = 1000;
  auto a = RandomBf16(70, K, 11), b = RandomBf16(13, K, 12), c = RandomBf16(200, K, 13), up = RandomBf16(200, K, 14);
  const std::vector<float> x = RandomVector(70 * K, 15);
  const std::vector<float> ya = Alone(x, 70, *a), yb = Alone(x, 70, *b), yc = Alone(x, 70, *c), yu = Alone(x, 70, *up);
  std::vector<float> swiglu(yc.size());
  ThreadPool one(1);
  cpu::SwiGlu(yc.data(), yu.data(), swiglu.data(), static_cast<int64_t>(yc.size()), &one);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 17, 33, 70}) {
      std::vector<float> ga(n * 70), gb(n * 13), gc(n * 200), fused(n * 200), scratch(n * 200);
      cpu::MatmulMany(x.data(), n, {{a.get(), ga.data()}, {b.get(), gb.data()}, {c.get(), gc.data()}}, &pool);
      EXPECT_EQ(0, std::memcmp(ga.data(), ya.data(), ga.size() * 4)) << n << " " << threads;
      EXPECT_EQ(0, std::memcmp(gb.data(), yb.data(), gb.size() * 4)) << n << " " << threads;
      EXPECT_EQ(0, std::memcmp(gc.data(), yc.data(), gc.size() * 4)) << n << " " << threads;
      cpu::MatmulSwiGlu(x.data(), n, *c, *up, fused.data(), scratch.data(), &pool);
      EXPECT_EQ(0, std::memcmp(fused.data(), swiglu.data(), fused.size() * 4)) << n << " " << threads;
    }
  }
}

// f32 weights are not AMX's: on `amx` they give the bits of `avx512-bf16`.
TEST_F(AmxMatmulTest, F32WeightsAsOnAvx512Bf16) {
  const int64_t M = 37, K = 100, n = 9;
  auto w = std::make_unique<Matrix>(WeightType::kF32, M, K);
  const std::vector<float> v = RandomVector(M * K, 21, 0.1f), x = RandomVector(n * K, 22);
  std::memcpy(w->data(), v.data(), v.size() * 4);
  ThreadPool pool(2);
  std::vector<float> amx(n * M), bf16(n * M);
  cpu::Matmul(x.data(), n, *w, amx.data(), &pool);
  cpu::SetCpuKernelsForTesting(CpuKernels::kAvx512Bf16);
  cpu::Matmul(x.data(), n, *w, bf16.data(), &pool);
  EXPECT_EQ(0, std::memcmp(amx.data(), bf16.data(), amx.size() * 4));
}

}  // namespace
}  // namespace layerskip
