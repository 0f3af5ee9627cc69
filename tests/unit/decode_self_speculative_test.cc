// Self-speculative decoding is lossless: greedy ids equal greedy autoregressive ids exactly, batched or
// not, for every exit layer and draft length; every layer's KV cache after a round equals bitwise the cache
// of autoregressive decoding; stop conditions inside a round; edge cases.
#include <cstring>
#include <filesystem>

#include "engine/decode/generate.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/autoregressive_step.h"
#include "engine/runtime/cpu_backend.h"
#include "gtest/gtest.h"
#include "tests/support/decode_runs.h"
#include "tests/support/random_vector.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

using testing::RandomIds;

using testing::RandomModel;
using testing::SmallConfig;


using testing::Decode;

DecodeOptions SelfSpec(int e, int d, bool adaptive = false) {
  DecodeOptions o;
  o.mode = DecodeMode::kSelfSpeculative;
  o.exit_layer = e;
  o.speculation.speculations = d;
  o.speculation.adaptive = adaptive;
  return o;
}

struct Case {
  WeightType type;
  int quiet_from;  // layers from here on write little to the residual: high acceptance
};

class LosslessTest : public ::testing::TestWithParam<Case> {};

TEST_P(LosslessTest, GreedyIdsEqualAutoregressive) {
  const LlamaConfig c = SmallConfig(8);
  auto m = RandomModel(c, GetParam().type, 7, 8.0f, GetParam().quiet_from);
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(RandomIds(1 + 5 * i, c.vocab_size, 100 + i));  // mixed lengths
  const int max_tokens = 24;
  // Reference: each prompt alone, autoregressive.
  std::vector<std::vector<int>> ref;
  for (const auto& p : prompts) ref.push_back(Decode(*m, {p}, DecodeOptions{}, max_tokens)[0]);
  // Autoregressive batched equals alone (batch invariance end to end).
  EXPECT_EQ(Decode(*m, prompts, DecodeOptions{}, max_tokens), ref);
  int64_t accepted = 0, drafted = 0;
  const int L = c.num_hidden_layers;
  for (int e : {1, L / 4, L / 2, L - 1}) {
    for (int d : {0, 1, 2, 4, 8, -1}) {
      const DecodeOptions o = d < 0 ? SelfSpec(e, 4, true) : SelfSpec(e, d);
      std::vector<SpecStats> stats;
      EXPECT_EQ(Decode(*m, prompts, o, max_tokens, &stats), ref) << "batch 8, E=" << e << " d=" << d;
      EXPECT_EQ(Decode(*m, {prompts[3]}, o, max_tokens)[0], ref[3]) << "batch 1, E=" << e << " d=" << d;
      for (const SpecStats& s : stats) {
        accepted += s.accepted;
        drafted += s.drafted;
        if (d == 0) {
          EXPECT_EQ(s.drafted, 0);
        }
      }
    }
  }
  // Both the accepting and the rejecting paths ran.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);
}

INSTANTIATE_TEST_SUITE_P(Models, LosslessTest,
                         ::testing::Values(Case{WeightType::kF32, 3}, Case{WeightType::kBF16, 3},
                                           Case{WeightType::kBF16, 1 << 20}));

// The trained LayerSkip demo model (models/layerskip-demo, trained with train/): code prompts of mixed
// lengths, batch 8 and batch 1, E in {1, L/4, L/2, L-1} and d in {1, 2, 4, 8, auto}.
TEST(TrainedModelTest, GreedyIdsEqualAutoregressive) {
  ModelLoadOptions load;
  load.threads = 2;
  load.max_context = 512;
  auto loaded = LoadModelDir(std::string(LAYERSKIP_SOURCE_DIR) + "/models/layerskip-demo", load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LoadedModel& m = **loaded;
  const char* texts[] = {"def __init__(self", "import os\nimport sys\n", "class Config:\n    def", "for i in range(",
                         "    return self.", "if __name__ == '__main__':\n", "x = [", "\"\"\"Return the"};
  std::vector<std::vector<int>> prompts;
  for (const char* t : texts) prompts.push_back(m.tokenizer->Encode(t, true));
  const int max_tokens = 20, L = m.weights->config.num_hidden_layers;
  std::vector<std::vector<int>> ref;
  for (const auto& p : prompts) ref.push_back(Decode(m, {p}, DecodeOptions{}, max_tokens)[0]);
  int64_t accepted = 0, drafted = 0;
  for (int e : {1, L / 4, L / 2, L - 1}) {
    for (int d : {1, 2, 4, 8, -1}) {
      const DecodeOptions o = d < 0 ? SelfSpec(e, 4, true) : SelfSpec(e, d);
      std::vector<SpecStats> stats;
      EXPECT_EQ(Decode(m, prompts, o, max_tokens, &stats), ref) << "batch 8, E=" << e << " d=" << d;
      EXPECT_EQ(Decode(m, {prompts[2]}, o, max_tokens)[0], ref[2]) << "batch 1, E=" << e << " d=" << d;
      for (const SpecStats& s : stats) {
        accepted += s.accepted;
        drafted += s.drafted;
      }
    }
  }
  EXPECT_GT(accepted, drafted / 4) << "a LayerSkip-trained model's early exits should often agree";
  EXPECT_LT(accepted, drafted);
}

// After every round, each layer's K/V of the cached positions equals bitwise what autoregressive decoding
// of the same tokens wrote.
TEST(RollbackTest, CacheEqualsAutoregressiveBitwise) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kBF16, 11, 8.0f, 2);
  const int L = c.num_hidden_layers;
  KvCache spec_cache(c, 0, L, 1, m->context), ar_cache(c, 0, L, 1, m->context);
  CpuBackend spec_backend(m->model.get(), &spec_cache), ar_backend(m->model.get(), &ar_cache);
  GenerationParams params;
  params.max_tokens = 40;
  Sequence spec(0, RandomIds(9, c.vocab_size, 3), params), ar(0, RandomIds(9, c.vocab_size, 3), params);
  const int E = 3;
  SpeculationConfig sc;
  sc.speculations = 5;
  int rounds_with_rejection = 0;
  while (!spec.finished()) {
    const int64_t before = spec.stats().drafted - spec.stats().accepted;
    ASSERT_TRUE(SelfSpeculativeRound(spec_backend, {&spec}, E, sc).ok());
    rounds_with_rejection += (spec.stats().drafted - spec.stats().accepted) > before;
    while (ar.num_tokens() < spec.num_tokens() && !ar.finished())
      ASSERT_TRUE(AutoregressiveStep(ar_backend, {&ar}, L).ok());
    ASSERT_EQ(ar.generated(), spec.generated());
    const int cached = spec.cached();
    for (int l = 0; l < L; ++l) {
      ASSERT_EQ(spec_cache.length(l, 0), cached) << "layer " << l;
      ASSERT_EQ(ar_cache.length(l, 0), ar.cached());
      for (int p = 0; p < cached; ++p) {
        ASSERT_EQ(0, std::memcmp(spec_cache.k(l, 0, p), ar_cache.k(l, 0, p), sizeof(float) * spec_cache.kv_dim()))
            << "K layer " << l << " position " << p;
        ASSERT_EQ(0, std::memcmp(spec_cache.v(l, 0, p), ar_cache.v(l, 0, p), sizeof(float) * spec_cache.kv_dim()))
            << "V layer " << l << " position " << p;
      }
    }
  }
  EXPECT_GT(rounds_with_rejection, 0);
}

TEST(EdgeCaseTest, ExitLayerOutOfRange) {
  const LlamaConfig c = SmallConfig(4);
  auto m = RandomModel(c, WeightType::kF32, 1);
  CpuBackend backend(m->model.get(), 1, m->context);
  for (int e : {0, 4, 5, -1}) {
    auto r = GenerateBatch(backend, {{1, 2}}, {GenerationParams{}}, SelfSpec(e, 4));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("exit_layer"), std::string::npos) << r.status();
  }
}

TEST(EdgeCaseTest, MaxTokensReachedMidRound) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kF32, 2, 8.0f, 1);  // nearly everything accepted
  const auto p = RandomIds(6, c.vocab_size, 5);
  for (int max_tokens : {1, 2, 3, 5, 7}) {
    std::vector<SpecStats> stats;
    const auto ss = Decode(*m, {p}, SelfSpec(1, 8), max_tokens, &stats)[0];
    EXPECT_EQ(ss, Decode(*m, {p}, DecodeOptions{}, max_tokens)[0]);
    EXPECT_EQ(static_cast<int>(ss.size()), max_tokens);
  }
}

TEST(EdgeCaseTest, EosDraftedFirstAndInsideRound) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kF32, 3, 8.0f, 1);
  const auto p = RandomIds(4, c.vocab_size, 6);
  const auto free_run = Decode(*m, {p}, DecodeOptions{}, 12)[0];
  for (size_t at : {size_t{0}, size_t{3}}) {
    const std::vector<int> eos = {free_run[at]};
    const auto ar = Decode(*m, {p}, DecodeOptions{}, 12, nullptr, eos)[0];
    ASSERT_EQ(ar.back(), free_run[at]);
    for (int d : {1, 4, 8}) EXPECT_EQ(Decode(*m, {p}, SelfSpec(2, d), 12, nullptr, eos)[0], ar) << "eos at " << at;
  }
}

// A stop check (stop strings in the service) that fires on a token in the middle of a round: nothing after it.
TEST(EdgeCaseTest, StopCheckInsideRound) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kF32, 3, 8.0f, 1);
  const auto p = RandomIds(4, c.vocab_size, 6);
  const auto free_run = Decode(*m, {p}, DecodeOptions{}, 16)[0];
  for (size_t at : {size_t{0}, size_t{2}, size_t{5}}) {
    const int target = free_run[at];
    CpuBackend backend(m->model.get(), 1, m->context);
    GenerationParams params;
    params.max_tokens = 16;
    params.stop_check = [target](const std::vector<int>& ids) { return ids.back() == target; };
    for (int d : {0, 2, 8}) {
      std::vector<SpecStats> stats;
      auto r = GenerateBatch(backend, {p}, {params}, SelfSpec(1, d));
      ASSERT_TRUE(r.ok()) << r.status();
      const std::vector<int>& ids = (*r)[0].ids;
      ASSERT_FALSE(ids.empty());
      EXPECT_EQ(ids.back(), target) << "d=" << d;
      EXPECT_EQ((*r)[0].finish_reason, FinishReason::kStop);
      EXPECT_EQ(ids, std::vector<int>(free_run.begin(), free_run.begin() + ids.size())) << "d=" << d;
      EXPECT_LE(ids.size(), at + 1);
    }
  }
}

TEST(EdgeCaseTest, OneTokenPromptAndContextLimit) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kBF16, 4, 8.0f, 2, 0.25f, 2, /*context=*/24);
  const std::vector<int> one = {5};
  EXPECT_EQ(Decode(*m, {one}, SelfSpec(2, 4), 10)[0], Decode(*m, {one}, DecodeOptions{}, 10)[0]);
  // The sequence runs into the last position: both stop with the context full.
  const auto p = RandomIds(15, c.vocab_size, 8);
  const auto ar = Decode(*m, {p}, DecodeOptions{}, 100)[0];
  EXPECT_EQ(static_cast<int>(p.size() + ar.size()), 24);
  for (int d : {1, 3, 8}) EXPECT_EQ(Decode(*m, {p}, SelfSpec(3, d), 100)[0], ar) << "d=" << d;
}

TEST(EdgeCaseTest, EarlyExitUsesOnlyFirstLayers) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kF32, 9);
  DecodeOptions ee;
  ee.mode = DecodeMode::kEarlyExit;
  ee.exit_layer = 2;
  const auto p = RandomIds(5, c.vocab_size, 1);
  const auto ids = Decode(*m, {p}, ee, 6)[0];
  // The early-exit tokens are the drafts that self-speculation with E=2 proposes at the first position.
  KvCache cache(c, 0, 6, 1, m->context);
  std::vector<float> x(p.size() * c.hidden_size), logits(c.vocab_size);
  TokenBatch b;
  for (size_t i = 0; i < p.size(); ++i) b.Add(0, static_cast<int>(i));
  ASSERT_TRUE(m->model->Embed(p, x.data()).ok());
  ASSERT_TRUE(m->model->Forward(0, 2, b, x.data(), &cache).ok());
  ASSERT_TRUE(m->model->ExitHead(x.data() + (p.size() - 1) * c.hidden_size, 1, logits.data()).ok());
  EXPECT_EQ(ids[0], cpu::Argmax(logits.data(), c.vocab_size));
  EXPECT_EQ(cache.length(2, 0), 0);  // later layers untouched
}

}  // namespace
}  // namespace layerskip
