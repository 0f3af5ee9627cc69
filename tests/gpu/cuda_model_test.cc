// The CUDA model against the CPU model (logits of prefill and decode on the committed transformers fixtures
// and models/tiny-random), its bitwise batch invariance, and lossless greedy self-speculative decoding on
// the device. Skipped without a GPU.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/runtime/cuda/cuda_decode.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "tests/gpu/cpu_reference.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/support/test_models.h"

namespace layerskip::cuda {
namespace {

using ::layerskip::cuda::testing::Down;
using ::layerskip::cuda::testing::GpuLogits;
using ::layerskip::cuda::testing::RandomIds;
using ::layerskip::cuda::testing::Zeros;

// Prefill of `ids` then `decode` more tokens one at a time (the ids themselves, teacher-forced); returns
// every row of logits. CPU side.
std::vector<float> CpuLogits(const LoadedModel& m, const std::vector<int>& ids, int prefill) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, 1, 256);
  std::vector<float> out;
  for (int begin = 0; begin < static_cast<int>(ids.size());) {
    const int n = begin == 0 ? prefill : 1;
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(0, begin + i);
    std::vector<float> x(static_cast<size_t>(n) * c.hidden_size), logits(static_cast<size_t>(n) * c.vocab_size);
    EXPECT_TRUE(m.model->Embed(absl::MakeConstSpan(ids).subspan(begin, n), x.data()).ok());
    EXPECT_TRUE(m.model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
    EXPECT_TRUE(m.model->ExitHead(x.data(), n, logits.data()).ok());
    out.insert(out.end(), logits.begin(), logits.end());
    begin += n;
  }
  return out;
}

class CudaModelFixtureTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// Logits of a 20-token prefill and 12 decode steps vs the CPU model with the same (bf16) weights.
TEST_P(CudaModelFixtureTest, LogitsMatchCpu) {
  const std::filesystem::path dir = testing::SourceDir() / GetParam();
  ModelLoadOptions o;
  o.threads = 2;
  o.max_context = 256;
  auto cpu = LoadModelDir(dir, o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  CudaModelOptions go;
  go.max_positions = 256;
  go.max_batch = 16;  // the 20-token prefill runs in two pieces
  auto gpu = CudaModel::Create(*(*cpu)->weights, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const int V = (*cpu)->weights->config.vocab_size;
  const std::vector<int> ids = RandomIds(32, V, 7);
  const std::vector<float> ref = CpuLogits(**cpu, ids, 20), got = GpuLogits(**gpu, ids, 20);
  ASSERT_EQ(ref.size(), got.size());
  // f32 activations on both sides, sums in other orders through every layer: 1e-4 of the row's largest
  // |logit| (the CPU path's own parity with transformers is 1e-4 relative, docs/engine.md).
  for (size_t r = 0; r < ids.size(); ++r) {
    float scale = 0;
    for (int v = 0; v < V; ++v) scale = std::max(scale, std::fabs(ref[r * V + v]));
    for (int v = 0; v < V; ++v) ASSERT_NEAR(got[r * V + v], ref[r * V + v], 1e-4f * scale) << "row " << r << " id " << v;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModelFixtureTest,
                         ::testing::Values("tests/fixtures/hf/gqa_tied", "tests/fixtures/hf/mha_untied",
                                           "tests/fixtures/hf/llama3_rope", "tests/fixtures/hf/bf16",
                                           "tests/fixtures/hf/sharded", "models/tiny-random"));

class CudaModelTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// The logits of a token are bitwise the same whether it runs alone, in a 6-sequence batch (64 tokens:
// decode attention), or in a 150-token batch (prefill attention).
TEST_P(CudaModelTest, LogitsBitwiseBatchInvariant) {
  const LlamaConfig c = layerskip::testing::SmallConfig(3, 211);
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 3, 4.0f);
  CudaModelOptions go;
  go.max_positions = 256;
  auto gpu = CudaModel::Create(*cpu->weights, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  for (const std::vector<int>& lens : {std::vector<int>{1, 7, 16, 3, 29, 8}, std::vector<int>{150}}) {
    std::vector<std::vector<int>> prompts;
    for (size_t s = 0; s < lens.size(); ++s) prompts.push_back(RandomIds(lens[s], c.vocab_size, 11 + s));
    // Batched.
    auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, static_cast<int>(lens.size()), 256);
    ASSERT_TRUE(cache.ok());
    TokenBatch b;
    std::vector<int> ids;
    for (size_t s = 0; s < prompts.size(); ++s)
      for (size_t i = 0; i < prompts[s].size(); ++i) {
        b.Add(static_cast<int>(s), static_cast<int>(i));
        ids.push_back(prompts[s][i]);
      }
    auto x = Zeros<float>(ids.size() * c.hidden_size);
    auto logits = Zeros<float>(ids.size() * c.vocab_size);
    ASSERT_TRUE((*gpu)->Embed(ids, x.get()).ok());
    ASSERT_TRUE((*gpu)->Forward(0, c.num_hidden_layers, b, x.get(), cache->get()).ok());
    ASSERT_TRUE((*gpu)->ExitHead(x.get(), b.size(), logits.get()).ok());
    const std::vector<float> batched = Down(logits);
    // Alone, token by token.
    size_t row = 0;
    for (const auto& p : prompts) {
      const std::vector<float> alone = GpuLogits(**gpu, p, 1);
      ASSERT_EQ(std::memcmp(alone.data(), batched.data() + row * c.vocab_size, alone.size() * sizeof(float)), 0)
          << "prompt of " << p.size() << " tokens";
      row += p.size();
    }
  }
}

// Greedy self-speculative ids equal greedy autoregressive ids on the device, for several (E, d), with and
// without the CUDA graph, on a LayerSkip-like random model (early exits agree with the full model often).
TEST_P(CudaModelTest, SelfSpeculativeIsLossless) {
  const LlamaConfig c = layerskip::testing::SmallConfig(6, 97);
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 21, 8.0f, /*quiet_from=*/2, 0.25f);
  CudaModelOptions go;
  go.max_positions = 256;
  auto gpu = CudaModel::Create(*cpu->weights, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<int> prompt = RandomIds(9, c.vocab_size, 4);
  const int max_new = 40;
  auto ar_cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 256);
  ASSERT_TRUE(ar_cache.ok());
  auto ar = GreedyAutoregressive(**gpu, ar_cache->get(), 0, prompt, max_new, c.num_hidden_layers);
  ASSERT_TRUE(ar.ok()) << ar.status();
  int accepted = 0;
  for (int E : {1, 2, 4})
    for (int d : {1, 3, 6})
      for (bool graph : {false, true}) {
        auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 2, 256);
        ASSERT_TRUE(cache.ok());
        SelfSpeculativeStats stats;
        auto spec = GreedySelfSpeculative(**gpu, cache->get(), 1, prompt, max_new, E, d, graph, &stats);
        ASSERT_TRUE(spec.ok()) << spec.status();
        EXPECT_EQ(*spec, *ar) << "E=" << E << " d=" << d << " graph=" << graph;
        if (graph) {
          EXPECT_TRUE(stats.graph) << "the round was not captured as a CUDA graph";
        }
        accepted += stats.accepted;
      }
  EXPECT_GT(accepted, 0) << "no draft was ever accepted: the test does not exercise acceptance";
}

// The index of the first difference of two id lists (their common length when one is a prefix).
size_t FirstDifference(const std::vector<int>& a, const std::vector<int>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// As above past the first attention chunk (positions >= 64: the decode attention folds several chunks),
// and autoregressive decoding is deterministic run to run.
TEST_P(CudaModelTest, SelfSpeculativeIsLosslessPastOneChunk) {
  const LlamaConfig c = layerskip::testing::SmallConfig(6, 97);
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 21, 8.0f, /*quiet_from=*/2, 0.25f);
  CudaModelOptions go;
  go.max_positions = 256;
  auto gpu = CudaModel::Create(*cpu->weights, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<int> prompt = RandomIds(9, c.vocab_size, 4);
  const int max_new = 160;
  std::vector<int> ar;
  for (int rep = 0; rep < 2; ++rep) {
    auto ar_cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 256);
    ASSERT_TRUE(ar_cache.ok());
    auto ids = GreedyAutoregressive(**gpu, ar_cache->get(), 0, prompt, max_new, c.num_hidden_layers);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (rep == 1) {
      EXPECT_EQ(*ids, ar) << "autoregressive decoding differs run to run at " << FirstDifference(*ids, ar);
    }
    ar = *ids;
  }
  for (int E : {1, 3})
    for (int d : {2, 4, 6})
      for (bool graph : {false, true}) {
        auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 2, 256);
        ASSERT_TRUE(cache.ok());
        auto spec = GreedySelfSpeculative(**gpu, cache->get(), 1, prompt, max_new, E, d, graph, nullptr);
        ASSERT_TRUE(spec.ok()) << spec.status();
        EXPECT_EQ(*spec, ar) << "E=" << E << " d=" << d << " graph=" << graph << ": first difference at generated token "
                             << FirstDifference(*spec, ar);
      }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaModelTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

// The trained demo model (models/layerskip-demo), as cuda_bench runs it: a text prompt, 128 tokens, the
// bench's (E, d) grid, eager and graph rounds.
TEST(CudaDemoModelTest, SelfSpeculativeIsLossless) {
  LS_SKIP_WITHOUT_GPU();
  ModelLoadOptions o;
  o.threads = 1;
  o.max_context = 512;
  auto demo = LoadModelDir(testing::SourceDir() / "models/layerskip-demo", o);
  ASSERT_TRUE(demo.ok()) << demo.status();
  CudaModelOptions go;
  go.max_positions = 512;
  auto gpu = CudaModel::Create(*(*demo)->weights, go);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const LlamaConfig& c = (*gpu)->config();
  const std::vector<int> prompt =
      (*demo)->tokenizer->Encode("def read_config(path):\n    \"\"\"Read the configuration file at path and return");
  const int max_new = 128;
  auto ar_cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
  ASSERT_TRUE(ar_cache.ok());
  auto ar = GreedyAutoregressive(**gpu, ar_cache->get(), 0, prompt, max_new, c.num_hidden_layers);
  ASSERT_TRUE(ar.ok()) << ar.status();
  for (int E : {2, 3, 4, 6, 8})
    for (int d : {0, 2, 4, 6})  // d = 0: autoregressive rounds
      for (bool graph : {false, true}) {
        auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
        ASSERT_TRUE(cache.ok());
        auto spec = GreedySelfSpeculative(**gpu, cache->get(), 0, prompt, max_new, E, d, graph, nullptr);
        ASSERT_TRUE(spec.ok()) << spec.status();
        EXPECT_EQ(*spec, *ar) << "E=" << E << " d=" << d << " graph=" << graph << ": first difference at generated token "
                              << FirstDifference(*spec, *ar);
      }
}

}  // namespace
}  // namespace layerskip::cuda
