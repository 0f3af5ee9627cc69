// The CUDA model's issue-17 paths (part of the cuda_model_test binary): the fused kernels (CudaKernels::kFused,
// the default) bitwise equal to the issue-7 kernels (kLegacy) where every weight's split-K is 1 (both then
// run the same arithmetic); a model whose down projection splits K: near the CPU model and bitwise
// batch-invariant; the bf16 KV cache's effect on the demo model's logits (printed) and lossless decoding
// over it; one decode step captured as a CUDA graph giving the autoregressive ids. Skipped without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "engine/runtime/cuda/cuda_decode.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "kernels/gemv_plan.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/support/test_models.h"

namespace layerskip::cuda {
namespace {

using ::layerskip::cuda::testing::Down;
using ::layerskip::cuda::testing::GpuLogits;
using ::layerskip::cuda::testing::RandomIds;
using ::layerskip::cuda::testing::Up;
using ::layerskip::cuda::testing::Zeros;

// Logits of a `prefill`-token prefill of ids, then the rest one token per call, on a fresh cache of `kv`.
std::unique_ptr<CudaModel> Gpu(const ModelWeights& w, CudaKernels kernels, int max_positions = 256,
                               bool fold_norm = true) {
  CudaModelOptions o;
  o.max_positions = max_positions;
  o.kernels = kernels;
  o.fold_norm = fold_norm;
  auto m = CudaModel::Create(w, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

bool AllSplitOne(const LlamaConfig& c) {
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  return GemvSplitK(c.q_dim() + 2 * c.kv_dim(), D) == 1 && GemvSplitK(D, c.q_dim()) == 1 &&
         GemvSplitK(2 * F, D) == 1 && GemvSplitK(D, F) == 1 && GemvSplitK(c.vocab_size, D) == 1;
}

class CudaFusedModelTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// Split-K 1 everywhere: the fused layer (7 launches, or 9 without fold_norm) is bitwise the legacy layer
// (17), prefill (prefill attention) and decode, f32 and bf16 KV.
TEST_P(CudaFusedModelTest, FusedIsBitwiseLegacyWhenNothingSplits) {
  const LlamaConfig c = layerskip::testing::SmallConfig(3, 211);
  ASSERT_TRUE(AllSplitOne(c));
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 3, 4.0f);
  auto legacy = Gpu(*cpu->weights, CudaKernels::kLegacy);
  ASSERT_TRUE(legacy);
  const std::vector<int> ids = RandomIds(90, c.vocab_size, 5);
  for (bool fold : {true, false}) {
    auto fused = Gpu(*cpu->weights, CudaKernels::kFused, 256, fold);
    ASSERT_TRUE(fused);
    for (DType kv : {DType::kF32, DType::kBF16}) {
      const std::vector<float> a = GpuLogits(*fused, ids, 70, kv), b = GpuLogits(*legacy, ids, 70, kv);
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << "kv bf16 " << (kv == DType::kBF16) << " fold_norm " << fold;
    }
  }
}

// A model whose down projection splits K (intermediate 2048: split 4): logits near the CPU model's, and a
// token's logits bitwise the same alone or in batches of 2..16 sequences.
TEST_P(CudaFusedModelTest, SplitKModelMatchesCpuAndIsBatchInvariant) {
  LlamaConfig c = layerskip::testing::SmallConfig(2, 211);
  c.intermediate_size = 2048;
  ASSERT_GT(GemvSplitK(c.hidden_size, c.intermediate_size), 1);
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 4, 1.0f);
  auto gpu = Gpu(*cpu->weights, CudaKernels::kFused);
  ASSERT_TRUE(gpu);
  // Against the CPU: one 12-token prefill, then 4 decode steps.
  const std::vector<int> ids = RandomIds(16, c.vocab_size, 8);
  const std::vector<float> got = GpuLogits(*gpu, ids, 12, DType::kF32);
  KvCache cache(c, 0, c.num_hidden_layers, 1, 256);
  std::vector<float> ref;
  for (int begin = 0; begin < 16;) {
    const int n = begin == 0 ? 12 : 1;
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(0, begin + i);
    std::vector<float> x(static_cast<size_t>(n) * c.hidden_size), l(static_cast<size_t>(n) * c.vocab_size);
    ASSERT_TRUE(cpu->model->Embed(absl::MakeConstSpan(ids).subspan(begin, n), x.data()).ok());
    ASSERT_TRUE(cpu->model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
    ASSERT_TRUE(cpu->model->ExitHead(x.data(), n, l.data()).ok());
    ref.insert(ref.end(), l.begin(), l.end());
    begin += n;
  }
  for (size_t r = 0; r < 16; ++r) {
    float scale = 0;
    for (int v = 0; v < c.vocab_size; ++v) scale = std::max(scale, std::fabs(ref[r * c.vocab_size + v]));
    for (int v = 0; v < c.vocab_size; ++v)
      ASSERT_NEAR(got[r * c.vocab_size + v], ref[r * c.vocab_size + v], 1e-4f * scale) << "row " << r;
  }
  // Decode steps of 16 sequences at once vs each alone: 3-token prompts, then 3 steps of one token each.
  const int S = 16, prompt = 3, steps = 3;
  std::vector<std::vector<int>> seqs;
  for (int s = 0; s < S; ++s) seqs.push_back(RandomIds(prompt + steps, c.vocab_size, 100 + s));
  std::vector<std::vector<float>> alone;
  for (int s = 0; s < S; ++s) alone.push_back(GpuLogits(*gpu, seqs[s], prompt, DType::kF32));
  for (int batch : {2, 5, 16}) {
    auto cache_b = CudaKvCache::Create(c, 0, c.num_hidden_layers, batch, 256);
    ASSERT_TRUE(cache_b.ok());
    auto x = Zeros<float>(static_cast<size_t>(batch) * prompt * c.hidden_size);
    auto logits = Zeros<float>(static_cast<size_t>(batch) * prompt * c.vocab_size);
    for (int t = 0; t <= steps; ++t) {  // t = 0: the prompts' prefill as one batch
      TokenBatch b;
      std::vector<int> in;
      for (int s = 0; s < batch; ++s)
        for (int i = (t == 0 ? 0 : prompt + t - 1); i < (t == 0 ? prompt : prompt + t); ++i) {
          b.Add(s, i);
          in.push_back(seqs[s][i]);
        }
      ASSERT_TRUE(gpu->Embed(in, x.get()).ok());
      ASSERT_TRUE(gpu->Forward(0, c.num_hidden_layers, b, x.get(), cache_b->get()).ok());
      ASSERT_TRUE(gpu->ExitHead(x.get(), b.size(), logits.get()).ok());
      const std::vector<float> l = Down(logits);
      for (int k = 0; k < b.size(); ++k) {
        const int s = b.slots[k], pos = b.positions[k];
        ASSERT_EQ(std::memcmp(l.data() + static_cast<size_t>(k) * c.vocab_size,
                              alone[s].data() + static_cast<size_t>(pos) * c.vocab_size, c.vocab_size * sizeof(float)),
                  0)
            << "sequence " << s << " position " << pos << " in a batch of " << batch;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaFusedModelTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

struct Demo {
  std::unique_ptr<LoadedModel> cpu;
  std::vector<int> prompt;
};
Demo LoadDemo() {
  ModelLoadOptions o;
  o.threads = 1;
  o.max_context = 512;
  auto demo = LoadModelDir(testing::SourceDir() / "models/layerskip-demo", o);
  EXPECT_TRUE(demo.ok()) << demo.status();
  if (!demo.ok()) return {};
  Demo d{std::move(demo).value(), {}};
  d.prompt =
      d.cpu->tokenizer->Encode("def read_config(path):\n    \"\"\"Read the configuration file at path and return");
  return d;
}

// The bf16 KV cache on the demo model: the largest |logit difference| against the f32 cache over a prefill
// and 100 teacher-forced decode steps (printed: the figure docs/cuda.md quotes), greedy ids agreeing, and
// self-speculative decoding over a bf16 cache still equal to autoregressive over the same cache.
TEST(CudaDemoBf16KvTest, LogitEffectAndLosslessDecoding) {
  LS_SKIP_WITHOUT_GPU();
  Demo d = LoadDemo();
  ASSERT_TRUE(d.cpu);
  auto gpu = Gpu(*d.cpu->weights, CudaKernels::kFused, 512);
  ASSERT_TRUE(gpu);
  const LlamaConfig& c = gpu->config();
  std::vector<int> ids = d.prompt;
  auto more = RandomIds(100, c.vocab_size, 3);
  ids.insert(ids.end(), more.begin(), more.end());
  const std::vector<float> a = GpuLogits(*gpu, ids, static_cast<int>(d.prompt.size()), DType::kF32);
  const std::vector<float> b = GpuLogits(*gpu, ids, static_cast<int>(d.prompt.size()), DType::kBF16);
  double max_diff = 0, max_logit = 0;
  int argmax_same = 0;
  const int V = c.vocab_size, rows = static_cast<int>(ids.size());
  for (int r = 0; r < rows; ++r) {
    const float* ra = a.data() + static_cast<size_t>(r) * V;
    const float* rb = b.data() + static_cast<size_t>(r) * V;
    for (int v = 0; v < V; ++v) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(ra[v] - rb[v])));
      max_logit = std::max(max_logit, static_cast<double>(std::fabs(ra[v])));
    }
    argmax_same += std::max_element(ra, ra + V) - ra == std::max_element(rb, rb + V) - rb;
  }
  std::printf("bf16 KV vs f32 KV on the demo model (%d rows): max |logit diff| %.5f (max |logit| %.3f), argmax "
              "equal on %d of %d rows\n",
              rows, max_diff, max_logit, argmax_same, rows);
  ::testing::Test::RecordProperty("bf16_kv_max_abs_logit_diff", std::to_string(max_diff));
  // Rounding K and V to 8 bits of mantissa moves logits by a small fraction of their range; a wrong cache
  // (garbage, a missed conversion) moves them by their whole range.
  EXPECT_LT(max_diff, 0.1 * max_logit);
  EXPECT_GE(argmax_same, rows * 7 / 10);

  auto ar_cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512, DType::kBF16);
  ASSERT_TRUE(ar_cache.ok());
  auto ar = GreedyAutoregressive(*gpu, ar_cache->get(), 0, d.prompt, 96, c.num_hidden_layers);
  ASSERT_TRUE(ar.ok()) << ar.status();
  for (int E : {3, 6})
    for (int dd : {2, 4})
      for (bool graph : {false, true}) {
        auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512, DType::kBF16);
        ASSERT_TRUE(cache.ok());
        auto spec = GreedySelfSpeculative(*gpu, cache->get(), 0, d.prompt, 96, E, dd, graph, nullptr);
        ASSERT_TRUE(spec.ok()) << spec.status();
        EXPECT_EQ(*spec, *ar) << "E=" << E << " d=" << dd << " graph=" << graph;
      }
}

// The demo model (split-K 1 everywhere): fused and legacy kernels give bitwise the same logits.
TEST(CudaDemoFusedTest, FusedIsBitwiseLegacy) {
  LS_SKIP_WITHOUT_GPU();
  Demo d = LoadDemo();
  ASSERT_TRUE(d.cpu);
  auto fused = Gpu(*d.cpu->weights, CudaKernels::kFused, 512), legacy = Gpu(*d.cpu->weights, CudaKernels::kLegacy, 512);
  ASSERT_TRUE(fused && legacy);
  if (!AllSplitOne(fused->config())) GTEST_SKIP() << "the demo model's shapes split K";
  std::vector<int> ids = d.prompt;
  auto more = RandomIds(40, fused->config().vocab_size, 4);
  ids.insert(ids.end(), more.begin(), more.end());
  const int P = static_cast<int>(d.prompt.size());
  const std::vector<float> a = GpuLogits(*fused, ids, P, DType::kF32), b = GpuLogits(*legacy, ids, P, DType::kF32);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// CaptureDecodeStep: a graph replayed once per token gives the autoregressive ids, for one sequence and for
// four sequences with the same prompt in one step.
TEST(CudaStepGraphTest, ReplayedStepsGiveTheAutoregressiveIds) {
  LS_SKIP_WITHOUT_GPU();
  Demo d = LoadDemo();
  ASSERT_TRUE(d.cpu);
  auto gpu = Gpu(*d.cpu->weights, CudaKernels::kFused, 512);
  ASSERT_TRUE(gpu);
  const LlamaConfig& c = gpu->config();
  const int P = static_cast<int>(d.prompt.size()), steps = 48;
  auto ar_cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
  ASSERT_TRUE(ar_cache.ok());
  auto ar = GreedyAutoregressive(*gpu, ar_cache->get(), 0, d.prompt, steps, c.num_hidden_layers);
  ASSERT_TRUE(ar.ok()) << ar.status();
  for (int n : {1, 4}) {
    auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, n, 512);
    ASSERT_TRUE(cache.ok());
    // Prefill each slot (one call), first ids from the last prompt rows.
    TokenBatch b;
    std::vector<int> in;
    for (int s = 0; s < n; ++s)
      for (int i = 0; i < P; ++i) b.Add(s, i), in.push_back(d.prompt[i]);
    auto x = Zeros<float>(static_cast<size_t>(n) * P * c.hidden_size);
    auto logits = Zeros<float>(static_cast<size_t>(n) * P * c.vocab_size);
    auto ids = Zeros<int>(n);
    ASSERT_TRUE(gpu->Embed(in, x.get()).ok());
    ASSERT_TRUE(gpu->Forward(0, c.num_hidden_layers, b, x.get(), cache->get()).ok());
    ASSERT_TRUE(gpu->ExitHead(x.get(), n * P, logits.get()).ok());
    for (int s = 0; s < n; ++s)
      ASSERT_TRUE(
          gpu->Argmax(logits.get() + (static_cast<size_t>(s) * P + P - 1) * c.vocab_size, 1, ids.get() + s).ok());
    std::vector<int> slots(n);
    for (int s = 0; s < n; ++s) slots[s] = s;
    auto slots_d = Up(slots);
    auto pos_d = Zeros<int>(n);
    auto graph = gpu->CaptureDecodeStep(n, ids.get(), slots_d.get(), pos_d.get(), x.get(), logits.get(), cache->get());
    ASSERT_TRUE(graph.ok()) << graph.status();
    std::vector<std::vector<int>> got(n);
    for (int t = 0; t < steps; ++t) {
      const std::vector<int> now = Down(ids);
      for (int s = 0; s < n; ++s) got[s].push_back(now[s]);
      if (t + 1 == steps) break;
      const std::vector<int> pos(n, P + t);  // token t goes in at position P + t
      ASSERT_EQ(cudaMemcpyAsync(pos_d.get(), pos.data(), n * sizeof(int), cudaMemcpyHostToDevice, gpu->stream()),
                cudaSuccess);
      ASSERT_TRUE((*graph)->Launch(gpu->stream()).ok());
      ASSERT_TRUE(gpu->Synchronize().ok());
    }
    for (int s = 0; s < n; ++s) EXPECT_EQ(got[s], *ar) << "sequence " << s << " of " << n;
  }
}

}  // namespace
}  // namespace layerskip::cuda
