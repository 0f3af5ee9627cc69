// CPU kernels against plain double-precision references, and bitwise batch invariance.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/util/bf16.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/simd.h"
#include "kernels/swiglu.h"
#include "tests/support/random_vector.h"

namespace layerskip {
namespace {

using ::layerskip::testing::RandomVector;

// HorizontalSum8 (8 outputs at once) must be HorizontalSum, bit for bit.
TEST(SimdTest, HorizontalSum8MatchesHorizontalSum) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (int trial = 0; trial < 2000; ++trial) {
    alignas(32) float lanes[8][8];
    for (auto& v : lanes)
      for (float& l : v) l = std::ldexp(mantissa(gen), exponent(gen));  // wide magnitudes: rounding shows
    __m256 v[8];
    for (int i = 0; i < 8; ++i) v[i] = _mm256_load_ps(lanes[i]);
    alignas(32) float sums[8];
    _mm256_store_ps(sums, cpu::HorizontalSum8(v));
    for (int i = 0; i < 8; ++i) {
      const float one = cpu::HorizontalSum(v[i]);
      ASSERT_EQ(0, std::memcmp(&one, &sums[i], 4)) << "trial " << trial << " vector " << i;
    }
  }
}

TEST(RmsNormTest, MatchesReference) {
  const int D = 96;
  std::vector<float> x = RandomVector(3 * D, 5), w = RandomVector(D, 6), y(3 * D);
  cpu::RmsNorm(x.data(), w.data(), y.data(), 3, D, 1e-5f);
  for (int i = 0; i < 3; ++i) {
    double ms = 0;
    for (int k = 0; k < D; ++k) ms += static_cast<double>(x[i * D + k]) * x[i * D + k];
    const double inv = 1.0 / std::sqrt(ms / D + 1e-5);
    for (int k = 0; k < D; ++k) EXPECT_NEAR(y[i * D + k], w[k] * x[i * D + k] * inv, 1e-5);
  }
}

TEST(RopeTest, Llama3ScalingBands) {
  RopeParams c;
  c.head_dim = 64;
  c.theta = 500000.0f;
  const std::vector<float> plain = cpu::RopeInvFreq(c);
  c.scaling = RopeScaling{"llama3", 32.0f, 1.0f, 4.0f, 8192};
  const std::vector<float> scaled = cpu::RopeInvFreq(c);
  int low = 0, mid = 0, high = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 8192 / 4.0) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i]);
      ++high;
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 32.0f);
      ++low;
    } else {
      const double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(scaled[i], (1 - smooth) * plain[i] / 32.0 + smooth * plain[i], 1e-6 * plain[i]);
      ++mid;
    }
  }
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  EXPECT_GT(high, 0);
}

TEST(RopeTest, RotatesHalves) {
  RopeParams c;
  c.head_dim = 8;
  c.theta = 10000.0f;
  cpu::RopeTable table(c, 16);
  std::vector<float> v = RandomVector(8, 7), r = v;
  cpu::ApplyRope(r.data(), 1, 8, table, 5);
  for (int i = 0; i < 4; ++i) {
    const double a = 5.0 * std::pow(10000.0, -2.0 * i / 8);
    EXPECT_NEAR(r[i], v[i] * std::cos(a) - v[i + 4] * std::sin(a), 1e-5);
    EXPECT_NEAR(r[i + 4], v[i + 4] * std::cos(a) + v[i] * std::sin(a), 1e-5);
  }
}

TEST(AttentionTest, MatchesReferenceWithGqa) {
  const int heads = 4, kv_heads = 2, hd = 16, capacity = 10, slots = 2;
  std::vector<float> k = RandomVector(slots * capacity * kv_heads * hd, 8),
                     v = RandomVector(slots * capacity * kv_heads * hd, 9);
  cpu::KvLayerView view{k.data(), v.data(), static_cast<int64_t>(capacity) * kv_heads * hd, kv_heads, hd};
  const std::vector<int> slot = {0, 1, 1}, pos = {3, 0, 7};
  std::vector<float> q = RandomVector(3 * heads * hd, 10), out(3 * heads * hd);
  ThreadPool pool(2);
  cpu::Attention(q.data(), 3, slot.data(), pos.data(), heads, view, out.data(), &pool);
  for (int i = 0; i < 3; ++i)
    for (int h = 0; h < heads; ++h) {
      const int g = h / (heads / kv_heads);
      std::vector<double> s(pos[i] + 1);
      double mx = -1e30, sum = 0;
      for (int p = 0; p <= pos[i]; ++p) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += q[(i * heads + h) * hd + d] * k[slot[i] * view.slot_stride + (p * kv_heads + g) * hd + d];
        s[p] = dot / std::sqrt(hd);
        mx = std::max(mx, s[p]);
      }
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double ref = 0;
        for (int p = 0; p <= pos[i]; ++p) ref += s[p] / sum * v[slot[i] * view.slot_stride + (p * kv_heads + g) * hd + d];
        EXPECT_NEAR(out[(i * heads + h) * hd + d], ref, 1e-5);
      }
    }
}

// Long rows (keys in tiles of 8) and head sizes with and without the register paths: against a double
// reference, and each token's output the same bits alone as in a batch of tokens at other positions.
TEST(AttentionTest, TiledKeysMatchReferenceAndAreBatchInvariant) {
  for (int hd : {16, 24, 64, 128}) {
    const int heads = 4, kv_heads = 2, capacity = 48;
    std::vector<float> k = RandomVector(capacity * kv_heads * hd, 11), v = RandomVector(capacity * kv_heads * hd, 12);
    cpu::KvLayerView view{k.data(), v.data(), static_cast<int64_t>(capacity) * kv_heads * hd, kv_heads, hd};
    std::vector<int> slot(capacity, 0), pos(capacity);
    for (int i = 0; i < capacity; ++i) pos[i] = i;
    std::vector<float> q = RandomVector(capacity * heads * hd, 13), batch(capacity * heads * hd);
    ThreadPool pool(2);
    cpu::Attention(q.data(), capacity, slot.data(), pos.data(), heads, view, batch.data(), &pool);
    for (int i : {0, 7, 8, 17, 47}) {
      std::vector<float> alone(heads * hd);
      cpu::Attention(q.data() + i * heads * hd, 1, slot.data(), pos.data() + i, heads, view, alone.data(), nullptr);
      ASSERT_EQ(0, std::memcmp(alone.data(), batch.data() + i * heads * hd, alone.size() * 4)) << "hd " << hd << " i " << i;
      for (int h = 0; h < heads; ++h) {
        const int g = h / (heads / kv_heads);
        std::vector<double> s(i + 1);
        double mx = -1e30, sum = 0;
        for (int p = 0; p <= i; ++p) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += q[(i * heads + h) * hd + d] * k[(p * kv_heads + g) * hd + d];
          s[p] = dot / std::sqrt(hd);
          mx = std::max(mx, s[p]);
        }
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int d = 0; d < hd; ++d) {
          double ref = 0;
          for (int p = 0; p <= i; ++p) ref += s[p] / sum * v[(p * kv_heads + g) * hd + d];
          ASSERT_NEAR(alone[h * hd + d], ref, 1e-4) << "hd " << hd << " i " << i;
        }
      }
    }
  }
}

TEST(SwiGluTest, MatchesFormula) {
  std::vector<float> g = {-2.0f, 0.0f, 1.5f}, u = {1.0f, 2.0f, -3.0f}, o(3);
  cpu::SwiGlu(g.data(), u.data(), o.data(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
}

TEST(SamplingTest, ArgmaxFirstOnTies) {
  std::vector<float> l = {1.0f, 3.0f, 3.0f, -1.0f};
  EXPECT_EQ(cpu::Argmax(l.data(), 4), 1);
}

TEST(SamplingTest, TopKTopPAndTemperature) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.25f), std::log(0.15f), std::log(0.1f)}, p(4);
  SamplingParams sp;
  sp.temperature = 1.0f;
  cpu::SamplingProbs(logits.data(), 4, sp, p.data());
  EXPECT_NEAR(p[0], 0.5, 1e-6);
  EXPECT_NEAR(p[3], 0.1, 1e-6);
  sp.top_k = 2;
  cpu::SamplingProbs(logits.data(), 4, sp, p.data());
  EXPECT_NEAR(p[0], 2.0 / 3, 1e-6);
  EXPECT_NEAR(p[1], 1.0 / 3, 1e-6);
  EXPECT_EQ(p[2], 0.0f);
  sp.top_k = 0;
  sp.top_p = 0.8f;  // 0.5 + 0.25 = 0.75 < 0.8, so 3 tokens are kept
  cpu::SamplingProbs(logits.data(), 4, sp, p.data());
  EXPECT_NEAR(p[2], 0.15 / 0.9, 1e-6);
  EXPECT_EQ(p[3], 0.0f);
  sp.top_p = 1.0f;
  sp.temperature = 2.0f;  // probabilities ~ sqrt(p)
  cpu::SamplingProbs(logits.data(), 4, sp, p.data());
  const double z = std::sqrt(0.5) + std::sqrt(0.25) + std::sqrt(0.15) + std::sqrt(0.1);
  EXPECT_NEAR(p[0], std::sqrt(0.5) / z, 1e-6);
}

TEST(SamplingTest, DrawFollowsDistribution) {
  std::vector<float> p = {0.2f, 0.0f, 0.8f};
  EXPECT_EQ(cpu::SampleFromProbs(p.data(), 3, 0.0), 0);
  EXPECT_EQ(cpu::SampleFromProbs(p.data(), 3, 0.19), 0);
  EXPECT_EQ(cpu::SampleFromProbs(p.data(), 3, 0.21), 2);
  EXPECT_EQ(cpu::SampleFromProbs(p.data(), 3, 0.999999), 2);
}

}  // namespace
}  // namespace layerskip
