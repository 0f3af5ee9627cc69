// The vectorised exp (kernels/exp_simd.h) against std::exp: within 2 ulp over the finite range, 0 far
// below it, +inf above it, NaN kept; a value's result does not depend on where it sits in a row; and
// SwiGLU built on it stays within a few ulp of the formula with std::exp.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_features.h"
#include "kernels/exp_simd.h"
#include "kernels/swiglu.h"

namespace layerskip {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Distance in units in the last place between two non-negative finite floats (their bit patterns are
// ordered like their values).
int64_t Ulps(float a, float b) { return std::llabs(static_cast<int64_t>(Bits(a)) - static_cast<int64_t>(Bits(b))); }

float RefExp(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }

// Every 97th float in [-104, 89] (about 22 million inputs, both signs, all exponents).
TEST(ExpTest, WithinTwoUlpOfStdExpOverTheRange) {
  std::vector<float> xs;
  for (uint32_t u = 0; u < 0x7f800000u; u += 97) {
    float f;
    std::memcpy(&f, &u, 4);
    if (f <= 89.0f) xs.push_back(f);
    if (f <= 104.0f) xs.push_back(-f);
  }
  std::vector<float> ys(xs.size());
  cpu::ExpArray(xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
  int64_t worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float ref = RefExp(xs[i]);
    ASSERT_FALSE(std::isnan(ys[i])) << xs[i];
    if (std::isinf(ref)) {
      EXPECT_TRUE(std::isinf(ys[i])) << xs[i];
      continue;
    }
    const int64_t d = Ulps(ys[i], ref);
    if (d > worst) worst = d, worst_x = xs[i];
  }
  EXPECT_LE(worst, 2) << "at x = " << worst_x << ": " << RefExp(worst_x);
}

TEST(ExpTest, LimitsAndSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {-inf, -1e30f, -200.0f, -104.5f, 0.0f, -0.0f, 1.0f, 88.7f, 88.8f, 100.0f, 1e30f, inf,
                           std::numeric_limits<float>::quiet_NaN()};
  std::vector<float> ys(xs.size());
  cpu::ExpArray(xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Bits(ys[i]), 0u) << xs[i];  // +0, exactly
  EXPECT_EQ(ys[4], 1.0f);
  EXPECT_EQ(ys[5], 1.0f);
  EXPECT_LE(Ulps(ys[6], RefExp(1.0f)), 1);
  EXPECT_LE(Ulps(ys[7], RefExp(88.7f)), 2);
  for (int i = 8; i < 12; ++i) EXPECT_EQ(ys[i], inf) << xs[i];
  EXPECT_TRUE(std::isnan(ys[12]));
}

// A value gives the same bits in the vector body and in any tail position of a row of any length.
TEST(ExpTest, SameBitsWhateverTheRowLength) {
  std::vector<float> xs(37);
  for (int i = 0; i < 37; ++i) xs[i] = -20.0f + 1.37f * i;
  std::vector<float> full(37);
  cpu::ExpArray(xs.data(), full.data(), 37);
  for (int start = 0; start < 37; ++start)
    for (int len = 1; start + len <= 37; ++len) {
      std::vector<float> part(len);
      cpu::ExpArray(xs.data() + start, part.data(), len);
      ASSERT_EQ(0, std::memcmp(part.data(), full.data() + start, 4 * len)) << start << " " << len;
    }
}

TEST(ExpTest, SwiGluCloseToTheFormulaAndRowLengthFree) {
  std::vector<float> g, u;
  for (int i = 0; i < 1000; ++i) g.push_back(-30.0f + 0.061f * i), u.push_back(1.0f + 0.01f * i);
  std::vector<float> out(g.size());
  cpu::SwiGlu(g.data(), u.data(), out.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double ref = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    EXPECT_NEAR(out[i], ref, 4e-7 * std::fabs(ref) + 1e-37) << g[i];
  }
  for (int len : {1, 7, 8, 9, 15, 17}) {
    std::vector<float> part(len);
    cpu::SwiGlu(g.data() + 3, u.data() + 3, part.data(), len);
    ASSERT_EQ(0, std::memcmp(part.data(), out.data() + 3, 4 * len)) << len;
  }
}

// SwiGLU (so the exp inside it) gives the same bits 8 lanes wide (avx2) and 16 wide (the AVX-512 paths),
// over gates across the whole exp range, for row lengths that leave every tail size.
TEST(ExpTest, SwiGluSameBitsOnEveryPath) {
  std::vector<float> g, u;
  for (uint32_t k = 0; k < 300000; ++k) {
    g.push_back(-110.0f + 200.0f * static_cast<float>(k) / 300000.0f);
    u.push_back(1.0f + static_cast<float>(k % 97) * 0.013f);
  }
  g.push_back(std::numeric_limits<float>::infinity()), u.push_back(1.0f);
  g.push_back(-std::numeric_limits<float>::infinity()), u.push_back(1.0f);
  g.push_back(std::numeric_limits<float>::quiet_NaN()), u.push_back(1.0f);
  std::vector<std::vector<float>> outs;
  for (cpu::CpuKernels path : {cpu::CpuKernels::kAvx2, cpu::CpuKernels::kAvx512}) {
    if (!cpu::CpuKernelsSupported(path, cpu::HostCpuFeatures())) continue;
    cpu::SetCpuKernelsForTesting(path);
    std::vector<float> out(g.size());
    for (int64_t a = 0, len = 1; a < static_cast<int64_t>(g.size()); a += len, len = len % 37 + 1)
      cpu::SwiGlu(g.data() + a, u.data() + a, out.data() + a, std::min<int64_t>(len, g.size() - a));
    outs.push_back(out);
    cpu::ResetCpuKernelsForTesting();
  }
  for (size_t p = 1; p < outs.size(); ++p) ASSERT_EQ(0, std::memcmp(outs[0].data(), outs[p].data(), 4 * g.size()));
}

}  // namespace
}  // namespace layerskip
