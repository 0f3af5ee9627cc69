// The CPU matmul on every kernel path this host supports (kernels/cpu_features.h): against a double
// precision reference, bitwise batch invariance, and the grouped entry points bitwise equal to separate
// products. Paths the host lacks are skipped (CI hosts may have AVX2 only).
#include <cmath>
#include <cstring>
#include <random>
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

std::unique_ptr<Matrix> RandomMatrix(WeightType type, int64_t rows, int64_t cols, uint32_t seed) {
  auto m = std::make_unique<Matrix>(type, rows, cols);
  std::vector<float> v = RandomVector(rows * cols, seed, 0.1f);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (type == WeightType::kF32) static_cast<float*>(m->data())[i] = v[i];
    else static_cast<uint16_t*>(m->data())[i] = F32ToBf16(v[i]);
  }
  return m;
}

// Runs the test on kernel path k, or skips it when the host lacks k (why: why()).
class PathScope {
 public:
  explicit PathScope(CpuKernels k) {
    const absl::StatusOr<CpuKernels> parsed = cpu::ParseCpuKernels(cpu::CpuKernelsName(k), cpu::HostCpuFeatures());
    ok_ = parsed.ok();
    why_ = parsed.ok() ? "" : std::string(parsed.status().message());
    if (ok_) cpu::SetCpuKernelsForTesting(k);
  }
  ~PathScope() { cpu::ResetCpuKernelsForTesting(); }
  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }

 private:
  bool ok_;
  std::string why_;
};

class MatmulTest : public ::testing::TestWithParam<std::tuple<CpuKernels, WeightType, int>> {};

TEST_P(MatmulTest, MatchesReference) {
  const auto [path, type, K] = GetParam();
  PathScope scope(path);
  if (!scope.ok()) GTEST_SKIP() << scope.why();
  // bf16 dot products round x to bf16: a relative error of 2^-9 per product at most.
  const bool bf16_x = cpu::RoundsInputsToBf16(path) && type == WeightType::kBF16;
  for (int64_t n : {1, 5, 9}) {
    const int64_t M = 37;
    auto w = RandomMatrix(type, M, K, 1);
    std::vector<float> x = RandomVector(n * K, 2), y(n * M);
    ThreadPool pool(2);
    cpu::Matmul(x.data(), n, *w, y.data(), &pool);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < M; ++j) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          ref += static_cast<double>(x[i * K + k]) * w->At(j, k);
          mag += std::abs(static_cast<double>(x[i * K + k]) * w->At(j, k));
        }
        const double tol = 1e-4 * (1 + std::abs(ref)) + (bf16_x ? 4e-3 * mag : 0.0);
        ASSERT_NEAR(y[i * M + j], ref, tol) << "n=" << n << " " << i << "," << j;
      }
  }
}

// Every row of the output is the same bits for any batch size, any position in the batch and any
// number of threads: what self-speculative verification relies on.
TEST_P(MatmulTest, BatchInvariantBitwise) {
  const auto [path, type, K] = GetParam();
  PathScope scope(path);
  if (!scope.ok()) GTEST_SKIP() << scope.why();
  const int64_t M = 301;  // large enough that batches of 4+ tokens split rows over threads
  auto w = RandomMatrix(type, M, K, 3);
  std::vector<float> x = RandomVector(64 * K, 4);
  ThreadPool one(1);
  std::vector<float> alone(64 * M);
  for (int64_t i = 0; i < 64; ++i) cpu::Matmul(x.data() + i * K, 1, *w, alone.data() + i * M, &one);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 16, 33, 64}) {
      for (int64_t start : {int64_t{0}, 64 - n}) {
        std::vector<float> y(n * M);
        cpu::Matmul(x.data() + start * K, n, *w, y.data(), &pool);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data() + start * M, n * M * sizeof(float)))
            << "n=" << n << " start=" << start << " threads=" << threads;
      }
    }
  }
}

// MatmulMany and MatmulSwiGlu give the bits of separate Matmul (and SwiGlu) calls.
TEST_P(MatmulTest, GroupedEqualsSeparateBitwise) {
  const auto [path, type, K] = GetParam();
  PathScope scope(path);
  if (!scope.ok()) GTEST_SKIP() << scope.why();
  auto a = RandomMatrix(type, 70, K, 5), b = RandomMatrix(type, 13, K, 6), c = RandomMatrix(type, 200, K, 7);
  auto up = RandomMatrix(type, 200, K, 8);
  ThreadPool pool(2);
  for (int64_t n : {1, 3, 6}) {
    std::vector<float> x = RandomVector(n * K, 9);
    std::vector<float> ya(n * 70), yb(n * 13), yc(n * 200), ga(n * 70), gb(n * 13), gc(n * 200);
    cpu::Matmul(x.data(), n, *a, ya.data(), &pool);
    cpu::Matmul(x.data(), n, *b, yb.data(), &pool);
    cpu::Matmul(x.data(), n, *c, yc.data(), &pool);
    cpu::MatmulMany(x.data(), n, {{a.get(), ga.data()}, {b.get(), gb.data()}, {c.get(), gc.data()}}, &pool);
    EXPECT_EQ(0, std::memcmp(ya.data(), ga.data(), ya.size() * 4)) << n;
    EXPECT_EQ(0, std::memcmp(yb.data(), gb.data(), yb.size() * 4)) << n;
    EXPECT_EQ(0, std::memcmp(yc.data(), gc.data(), yc.size() * 4)) << n;
    std::vector<float> yu(n * 200), fused(n * 200), scratch(n * 200);
    cpu::Matmul(x.data(), n, *up, yu.data(), &pool);
    cpu::SwiGlu(yc.data(), yu.data(), yc.data(), n * 200, &pool);
    cpu::MatmulSwiGlu(x.data(), n, *c, *up, fused.data(), scratch.data(), &pool);
    EXPECT_EQ(0, std::memcmp(yc.data(), fused.data(), yc.size() * 4)) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, MatmulTest,
    ::testing::Combine(::testing::Values(CpuKernels::kAvx2, CpuKernels::kAvx512, CpuKernels::kAvx512Bf16, CpuKernels::kAmx),
                       ::testing::Values(WeightType::kF32, WeightType::kBF16),
                       ::testing::Values(16, 64, 100, 256, 688, 2048, 2056)),
    [](const auto& info) {
      std::string name = cpu::CpuKernelsName(std::get<0>(info.param));
      for (char& ch : name)
        if (ch == '-') ch = '_';
      return name + (std::get<1>(info.param) == WeightType::kF32 ? "_f32_" : "_bf16_") +
             std::to_string(std::get<2>(info.param));
    });

TEST(CpuFeaturesTest, BestPathAndForcedPaths) {
  cpu::CpuFeatures avx2;
  avx2.avx2 = avx2.fma = avx2.f16c = true;
  EXPECT_EQ(cpu::BestCpuKernels(avx2), CpuKernels::kAvx2);
  cpu::CpuFeatures avx512 = avx2;
  avx512.avx512f = avx512.avx512bw = avx512.avx512vl = avx512.avx512dq = true;
  EXPECT_EQ(cpu::BestCpuKernels(avx512), CpuKernels::kAvx512);
  cpu::CpuFeatures bf16 = avx512;
  bf16.avx512_bf16 = true;
  EXPECT_EQ(cpu::BestCpuKernels(bf16), CpuKernels::kAvx512Bf16);

  EXPECT_EQ(*cpu::ParseCpuKernels("avx2", bf16), CpuKernels::kAvx2);
  EXPECT_EQ(*cpu::ParseCpuKernels("avx512", bf16), CpuKernels::kAvx512);
  const auto above = cpu::ParseCpuKernels("avx512-bf16", avx512);
  ASSERT_FALSE(above.ok());
  EXPECT_NE(above.status().message().find("AVX512_BF16"), std::string::npos) << above.status();
  EXPECT_FALSE(cpu::ParseCpuKernels("avx512", avx2).ok());
  const auto unknown = cpu::ParseCpuKernels("sse2", bf16);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("avx2, avx512, avx512-bf16, amx"), std::string::npos) << unknown.status();

  // AMX is never the model-independent best path, and an error without the tile instructions.
  cpu::CpuFeatures amx = bf16;
  amx.amx_tile = amx.amx_bf16 = amx.amx_int8 = true;
  EXPECT_EQ(cpu::BestCpuKernels(amx), CpuKernels::kAvx512Bf16);
  EXPECT_TRUE(cpu::CpuKernelsSupported(CpuKernels::kAmx, amx));
  EXPECT_FALSE(cpu::CpuKernelsSupported(CpuKernels::kAmx, bf16));
  const auto no_amx = cpu::ParseCpuKernels("amx", bf16);
  ASSERT_FALSE(no_amx.ok());
  EXPECT_NE(no_amx.status().message().find("AMX-TILE and AMX-BF16"), std::string::npos) << no_amx.status();
  EXPECT_TRUE(cpu::RoundsInputsToBf16(CpuKernels::kAmx));
  EXPECT_FALSE(cpu::RoundsInputsToBf16(CpuKernels::kAvx512));
}

// LAYERSKIP_CPU_KERNELS's syntax: one path for both roles, or PROMPT/GENERATED; each half validated.
TEST(CpuFeaturesTest, ParsesAPairOfPaths) {
  cpu::CpuFeatures bf16;
  bf16.avx2 = bf16.fma = bf16.f16c = true;
  bf16.avx512f = bf16.avx512bw = bf16.avx512vl = bf16.avx512dq = bf16.avx512_bf16 = true;
  const auto one = cpu::ParseCpuKernelPair("avx512", bf16);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->prompt, CpuKernels::kAvx512);
  EXPECT_EQ(one->generated, CpuKernels::kAvx512);
  const auto two = cpu::ParseCpuKernelPair("avx2/avx512-bf16", bf16);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->prompt, CpuKernels::kAvx2);
  EXPECT_EQ(two->generated, CpuKernels::kAvx512Bf16);
  EXPECT_EQ(cpu::CpuKernelPairName(*two), "avx2/avx512-bf16");
  EXPECT_EQ(cpu::CpuKernelPairName(*one), "avx512");
  for (const char* bad : {"avx2/", "/avx2", "avx2/sse2", "avx2/avx2/avx2", ""}) {
    const auto parsed = cpu::ParseCpuKernelPair(bad, bf16);
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("not a CPU kernel path"), std::string::npos) << parsed.status();
    }
  }
  cpu::CpuFeatures avx2;
  avx2.avx2 = avx2.fma = avx2.f16c = true;
  const auto unsupported = cpu::ParseCpuKernelPair("avx2/avx512", avx2);
  ASSERT_FALSE(unsupported.ok());
  EXPECT_NE(unsupported.status().message().find("AVX-512"), std::string::npos) << unsupported.status();
}

// On a host with AMX the permission request either succeeds or says why; ParseCpuKernels agrees with it.
TEST(CpuFeaturesTest, AmxPermissionMatchesParse) {
  const cpu::CpuFeatures& f = cpu::HostCpuFeatures();
  if (!cpu::CpuKernelsSupported(CpuKernels::kAmx, f)) GTEST_SKIP() << "host lacks AMX-BF16: " << f.Describe();
  const absl::Status permitted = cpu::AmxPermission();
  const auto parsed = cpu::ParseCpuKernels("amx", f);
  EXPECT_EQ(permitted.ok(), parsed.ok()) << permitted << " / " << parsed.status();
  if (parsed.ok()) EXPECT_EQ(*parsed, CpuKernels::kAmx);
  else EXPECT_NE(parsed.status().message().find("unavailable"), std::string::npos) << parsed.status();
}

// The per-model default pair (prompt/generated): on a host with the tiles and Linux's permission, prompts of
// bf16 weights on AMX, generated tokens too when the weights exceed the last-level cache; otherwise the best
// path for both.
TEST(CpuFeaturesTest, ModelDefaultTakesAmxForPromptsAndForWeightsBeyondTheCache) {
  cpu::CpuFeatures bf16;
  bf16.avx2 = bf16.fma = bf16.f16c = true;
  bf16.avx512f = bf16.avx512bw = bf16.avx512vl = bf16.avx512dq = bf16.avx512_bf16 = true;
  cpu::CpuFeatures amx = bf16;
  amx.amx_tile = amx.amx_bf16 = true;
  const int64_t llc = int64_t{32} << 20;
  auto name = [&](const cpu::CpuFeatures& f, bool permitted, int64_t bytes) {
    return cpu::CpuKernelPairName(cpu::DefaultCpuKernelsForModel(f, permitted, bytes, llc));
  };
  EXPECT_EQ(name(amx, true, 2 * llc), "amx");
  EXPECT_EQ(name(amx, true, llc), "amx/avx512-bf16");  // fits the cache: decode on avx512-bf16
  EXPECT_EQ(name(amx, true, 1), "amx/avx512-bf16");
  EXPECT_EQ(name(amx, true, 0), "avx512-bf16");         // no bf16 matmuls (int8 / f32)
  EXPECT_EQ(name(amx, false, 2 * llc), "avx512-bf16");  // refused
  EXPECT_EQ(name(amx, false, llc), "avx512-bf16");
  EXPECT_EQ(name(bf16, true, 2 * llc), "avx512-bf16");  // no tiles
  EXPECT_EQ(name(bf16, true, llc), "avx512-bf16");
  cpu::CpuFeatures avx2;
  avx2.avx2 = avx2.fma = avx2.f16c = true;
  EXPECT_EQ(name(avx2, false, 2 * llc), "avx2");
  EXPECT_EQ(name(avx2, true, llc), "avx2");
  const cpu::CpuKernelPair split = cpu::DefaultCpuKernelsForModel(amx, true, llc, llc);
  EXPECT_EQ(split.prompt, CpuKernels::kAmx);
  EXPECT_EQ(split.generated, CpuKernels::kAvx512Bf16);
  EXPECT_GT(cpu::LastLevelCacheBytes(), 0);
}

// Once a process's pair is fixed (here by the kernels run before), a model's choice never changes it: every
// token of a role is computed on one path for the life of the process.
TEST(CpuFeaturesTest, FirstChoiceHoldsForTheProcess) {
  const cpu::CpuKernelPair before = cpu::ActiveCpuKernelPair();
  cpu::ChooseCpuKernelsForModel(int64_t{1} << 50);  // a model far beyond any cache
  EXPECT_TRUE(cpu::ActiveCpuKernelPair() == before);
  cpu::ChooseCpuKernelsForModel(1);  // a model within it
  EXPECT_TRUE(cpu::ActiveCpuKernelPair() == before);
  cpu::ChooseCpuKernelsForModel(0);
  EXPECT_TRUE(cpu::ActiveCpuKernelPair() == before);
  EXPECT_EQ(cpu::ActiveCpuKernels(), before.generated);
  EXPECT_EQ(cpu::PromptCpuKernels(), before.prompt);
}

TEST(CpuFeaturesTest, HostHasTheBaselineAndAPath) {
  const cpu::CpuFeatures& f = cpu::HostCpuFeatures();
  EXPECT_TRUE(f.avx2 && f.fma && f.f16c) << f.Describe();
  EXPECT_TRUE(cpu::CheckCpuKernels().ok()) << cpu::CheckCpuKernels();
  std::printf("host: %s; kernels: %s\n", f.Describe().c_str(), cpu::CpuKernelPairName(cpu::ActiveCpuKernelPair()).c_str());
}

}  // namespace
}  // namespace layerskip
