// Speculative sampling keeps the full model's distribution: on an 8-token vocabulary, the empirical joint
// distribution of the first two generated tokens over many seeds matches the exact one computed from the
// full model's logits (chi-square, significance 0.001, fixed seeds so the test is deterministic).
#include <cmath>
#include <map>

#include "engine/decode/generate.h"
#include "engine/runtime/cpu_backend.h"
#include "gtest/gtest.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

// Full-model next-token distribution after `ids`.
std::vector<float> NextProbs(const LoadedModel& m, const std::vector<int>& ids, const SamplingParams& sp) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, 1, m.context);
  std::vector<float> x(ids.size() * c.hidden_size), logits(c.vocab_size), p(c.vocab_size);
  TokenBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.Add(0, static_cast<int>(i));
  EXPECT_TRUE(m.model->Embed(ids, x.data()).ok());
  EXPECT_TRUE(m.model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
  EXPECT_TRUE(m.model->ExitHead(x.data() + (ids.size() - 1) * c.hidden_size, 1, logits.data()).ok());
  cpu::SamplingProbs(logits.data(), c.vocab_size, sp, p.data());
  return p;
}

// Upper 0.001 quantile of chi-square with k degrees of freedom (Wilson-Hilferty).
double ChiSquareCritical(int k) {
  const double z = 3.0902, a = 2.0 / (9.0 * k);
  return k * std::pow(1 - a + z * std::sqrt(a), 3);
}

struct SamplingCase {
  float temperature;
  int top_k;
  float top_p;
};

class SpeculativeSamplingTest : public ::testing::TestWithParam<SamplingCase> {};

TEST_P(SpeculativeSamplingTest, JointDistributionOfFirstTwoTokens) {
  const LlamaConfig c = testing::SmallConfig(6, /*vocab=*/8);
  auto m = testing::RandomModel(c, WeightType::kF32, 21, /*sharpen=*/4.0f);
  const int V = c.vocab_size;
  SamplingParams sp{GetParam().temperature, GetParam().top_k, GetParam().top_p};
  const std::vector<int> prompt = {1, 5, 2, 7};
  // Exact p(t1, t2).
  std::vector<double> exact(V * V, 0.0);
  const std::vector<float> p1 = NextProbs(*m, prompt, sp);
  for (int a = 0; a < V; ++a) {
    if (p1[a] == 0) continue;
    std::vector<int> ids = prompt;
    ids.push_back(a);
    const std::vector<float> p2 = NextProbs(*m, ids, sp);
    for (int b = 0; b < V; ++b) exact[a * V + b] = static_cast<double>(p1[a]) * p2[b];
  }
  const int n = 4000;
  for (DecodeMode mode : {DecodeMode::kAutoregressive, DecodeMode::kSelfSpeculative}) {
    DecodeOptions o;
    o.mode = mode;
    o.exit_layer = 2;
    o.speculation.speculations = 3;
    std::vector<int64_t> counts(V * V, 0);
    int64_t drafted = 0, accepted = 0;
    CpuBackend backend(m->model.get(), 1, m->context);
    for (int seed = 0; seed < n; ++seed) {
      GenerationParams gp;
      gp.max_tokens = 2;
      gp.sampling = sp;
      gp.seed = 1000003ull * seed + 17;
      auto r = GenerateBatch(backend, {prompt}, {gp}, o);
      ASSERT_TRUE(r.ok()) << r.status();
      const auto& ids = (*r)[0].ids;
      ASSERT_EQ(ids.size(), 2u);
      ++counts[ids[0] * V + ids[1]];
      drafted += (*r)[0].spec.drafted;
      accepted += (*r)[0].spec.accepted;
    }
    // Chi-square over cells with expected count >= 5; the rest pooled into one cell.
    double chi2 = 0, pooled_expected = 0, pooled_observed = 0;
    int cells = 0;
    for (int i = 0; i < V * V; ++i) {
      const double e = exact[i] * n;
      if (e == 0) {
        EXPECT_EQ(counts[i], 0) << "a token outside the sampling distribution was drawn";
        continue;
      }
      if (e < 5) {
        pooled_expected += e;
        pooled_observed += counts[i];
        continue;
      }
      chi2 += (counts[i] - e) * (counts[i] - e) / e;
      ++cells;
    }
    if (pooled_expected > 0) {
      chi2 += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
      ++cells;
    }
    const double critical = ChiSquareCritical(cells - 1);
    EXPECT_LT(chi2, critical) << DecodeModeName(mode) << ": chi-square " << chi2 << " over " << cells << " cells";
    if (mode == DecodeMode::kSelfSpeculative) {
      EXPECT_GT(accepted, 0);
      EXPECT_LT(accepted, drafted) << "rejections must occur for the test to cover residual sampling";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Params, SpeculativeSamplingTest,
                         ::testing::Values(SamplingCase{1.0f, 0, 1.0f}, SamplingCase{0.8f, 5, 0.9f}));

// The same seed gives the same tokens; a different seed (almost surely) other tokens.
TEST(SamplingSeedTest, Deterministic) {
  const LlamaConfig c = testing::SmallConfig(4, 64);
  auto m = testing::RandomModel(c, WeightType::kF32, 5, 2.0f);
  CpuBackend backend(m->model.get(), 1, m->context);
  GenerationParams gp;
  gp.max_tokens = 20;
  gp.sampling.temperature = 1.0f;
  gp.seed = 9;
  DecodeOptions ss;
  ss.mode = DecodeMode::kSelfSpeculative;
  ss.exit_layer = 2;
  auto a = GenerateBatch(backend, {{1, 2, 3}}, {gp}, ss);
  auto b = GenerateBatch(backend, {{1, 2, 3}}, {gp}, ss);
  gp.seed = 10;
  auto other = GenerateBatch(backend, {{1, 2, 3}}, {gp}, ss);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  EXPECT_EQ((*a)[0].ids, (*b)[0].ids);
  EXPECT_NE((*a)[0].ids, (*other)[0].ids);
}

}  // namespace
}  // namespace layerskip
