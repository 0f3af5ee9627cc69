// The CUDA model with issue 17's not-yet-default kernels on (UseNewKernels: the wide GEMV plan, the argmax in
// the LM head, the one-kernel decode attention; part of the cuda_model_test binary): logits near the CPU
// model's and bitwise the same alone or in batches of 2..16 sequences; ExitArgmax's ids equal the argmax of
// ExitHead's logits; the one-kernel attention bitwise the two-kernel one inside the model; greedy
// self-speculative decoding equal to greedy autoregressive on the demo model, eagerly, with round graphs
// and with one graph per decode step. Skipped without a GPU.
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
#include "kernels/sampling.h"
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

std::unique_ptr<CudaModel> NewModel(const ModelWeights& w, const CudaModelOptions& o) {
  auto m = CudaModel::Create(w, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

CudaModelOptions NewKernels(int max_positions = 256) {
  CudaModelOptions o;
  o.max_positions = max_positions;
  UseNewKernels(&o);
  return o;
}

// Hidden 512, 8 heads of 64, 2 KV heads, intermediate 1024: every weight splits K under the wide plan
// (none under the default one), so the wide plan's order is what runs.
LlamaConfig WideConfig() {
  LlamaConfig c = layerskip::testing::SmallConfig(2, 211);
  c.hidden_size = 512;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.intermediate_size = 1024;
  return c;
}

class CudaNewKernelsModelTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaNewKernelsModelTest, NearCpuBatchInvariantAndArgmaxInTheHead) {
  const LlamaConfig c = WideConfig();
  const int64_t D = c.hidden_size;
  ASSERT_GT(GemvSplitK(c.q_dim() + 2 * c.kv_dim(), D, GemvPlanKind::kWide), 1);
  ASSERT_GT(GemvSplitK(D, c.q_dim(), GemvPlanKind::kWide), 1);
  auto cpu = layerskip::testing::RandomModel(c, GetParam(), 4, 1.0f);
  auto gpu = NewModel(*cpu->weights, NewKernels());
  ASSERT_TRUE(gpu);
  const int V = c.vocab_size;
  // Against the CPU: a 12-token prefill (tiled prefill attention is not used below 65 tokens: the
  // one-kernel decode attention runs), then 4 decode steps.
  const std::vector<int> ids = RandomIds(16, V, 8);
  const std::vector<float> got = GpuLogits(*gpu, ids, 12, DType::kF32);
  KvCache cache(c, 0, c.num_hidden_layers, 1, 256);
  std::vector<float> ref;
  for (int begin = 0; begin < 16;) {
    const int n = begin == 0 ? 12 : 1;
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(0, begin + i);
    std::vector<float> x(static_cast<size_t>(n) * D), l(static_cast<size_t>(n) * V);
    ASSERT_TRUE(cpu->model->Embed(absl::MakeConstSpan(ids).subspan(begin, n), x.data()).ok());
    ASSERT_TRUE(cpu->model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
    ASSERT_TRUE(cpu->model->ExitHead(x.data(), n, l.data()).ok());
    ref.insert(ref.end(), l.begin(), l.end());
    begin += n;
  }
  for (size_t r = 0; r < 16; ++r) {
    float scale = 0;
    for (int v = 0; v < V; ++v) scale = std::max(scale, std::fabs(ref[r * V + v]));
    for (int v = 0; v < V; ++v) ASSERT_NEAR(got[r * V + v], ref[r * V + v], 1e-4f * scale) << "row " << r;
  }
  // The same model with only the two-kernel attention: bitwise the same logits.
  CudaModelOptions split_attention = NewKernels();
  split_attention.fused_attention = false;
  auto gpu2 = NewModel(*cpu->weights, split_attention);
  ASSERT_TRUE(gpu2);
  const std::vector<float> got2 = GpuLogits(*gpu2, ids, 12, DType::kF32);
  EXPECT_EQ(std::memcmp(got.data(), got2.data(), got.size() * sizeof(float)), 0) << "one-kernel attention";
  // And with the GEMVs launched as programmatic dependents (kWidePdl): bitwise kWide.
  CudaModelOptions pdl = NewKernels();
  pdl.gemv_plan = GemvPlanKind::kWidePdl;
  auto gpu3 = NewModel(*cpu->weights, pdl);
  ASSERT_TRUE(gpu3);
  const std::vector<float> got3 = GpuLogits(*gpu3, ids, 12, DType::kF32);
  EXPECT_EQ(std::memcmp(got.data(), got3.data(), got.size() * sizeof(float)), 0) << "programmatic launches";

  // 16 sequences: 3-token prompts, then 3 one-token steps, alone and in batches of 1..16; logits bitwise,
  // and ExitArgmax (no logits written) equal to the argmax of the logits.
  const int S = 16, prompt = 3, steps = 3;
  std::vector<std::vector<int>> seqs;
  for (int s = 0; s < S; ++s) seqs.push_back(RandomIds(prompt + steps, V, 100 + s));
  std::vector<std::vector<float>> alone;
  for (int s = 0; s < S; ++s) alone.push_back(GpuLogits(*gpu, seqs[s], prompt, DType::kF32));
  for (int batch = 1; batch <= S; ++batch) {
    auto cache_b = CudaKvCache::Create(c, 0, c.num_hidden_layers, batch, 256);
    ASSERT_TRUE(cache_b.ok());
    auto x = Zeros<float>(static_cast<size_t>(batch) * prompt * D);
    auto logits = Zeros<float>(static_cast<size_t>(batch) * prompt * V);
    auto scratch = Zeros<float>(static_cast<size_t>(batch) * prompt * V);
    auto head_ids = Zeros<int>(static_cast<size_t>(batch) * prompt);
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
      ASSERT_TRUE(gpu->ExitArgmax(x.get(), b.size(), scratch.get(), head_ids.get()).ok());
      const std::vector<float> l = Down(logits);
      const std::vector<int> h = Down(head_ids);
      for (int k = 0; k < b.size(); ++k) {
        const int s = b.slots[k], pos = b.positions[k];
        const float* row = l.data() + static_cast<size_t>(k) * V;
        ASSERT_EQ(std::memcmp(row, alone[s].data() + static_cast<size_t>(pos) * V, V * sizeof(float)), 0)
            << "sequence " << s << " position " << pos << " in a batch of " << batch;
        ASSERT_EQ(h[k], cpu::Argmax(row, V)) << "argmax in the head, sequence " << s << " position " << pos;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaNewKernelsModelTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

// The demo model with every new kernel: greedy self-speculative == greedy autoregressive (eager rounds and
// round graphs, f32 and bf16 KV), and one graph per decode step (CaptureDecodeStep, argmax in the head) for
// 1 and 4 sequences gives the autoregressive ids; the same with the GEMVs as programmatic dependent launches
// (kWidePdl, param "programmatic"). Prints how many ids equal the default kernels' (the wide plan's sums
// round differently; lossless decoding needs equality within one configuration only).
class CudaNewKernelsDemoTest : public ::testing::TestWithParam<bool> {  // GEMVs as programmatic launches
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaNewKernelsDemoTest, SelfSpeculativeAndStepGraphsEqualAutoregressive) {
  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 512;
  auto demo = LoadModelDir(testing::SourceDir() / "models/layerskip-demo", lo);
  ASSERT_TRUE(demo.ok()) << demo.status();
  const std::vector<int> prompt =
      (*demo)->tokenizer->Encode("def read_config(path):\n    \"\"\"Read the configuration file at path and return");
  CudaModelOptions options = NewKernels(512);
  if (GetParam()) options.gemv_plan = GemvPlanKind::kWidePdl;
  auto gpu = NewModel(*(*demo)->weights, options);
  CudaModelOptions plain;
  plain.max_positions = 512;
  auto base = NewModel(*(*demo)->weights, plain);
  ASSERT_TRUE(gpu && base);
  const LlamaConfig& c = gpu->config();
  const int L = c.num_hidden_layers, P = static_cast<int>(prompt.size()), tokens = 96;
  for (DType kv : {DType::kF32, DType::kBF16}) {
    auto ar_cache = CudaKvCache::Create(c, 0, L, 1, 512, kv);
    ASSERT_TRUE(ar_cache.ok());
    auto ar = GreedyAutoregressive(*gpu, ar_cache->get(), 0, prompt, tokens, L);
    ASSERT_TRUE(ar.ok()) << ar.status();
    auto base_cache = CudaKvCache::Create(c, 0, L, 1, 512, kv);
    ASSERT_TRUE(base_cache.ok());
    auto base_ids = GreedyAutoregressive(*base, base_cache->get(), 0, prompt, tokens, L);
    ASSERT_TRUE(base_ids.ok());
    int same = 0;
    while (same < tokens && (*ar)[same] == (*base_ids)[same]) ++same;
    std::printf("new kernels vs default kernels, demo model, kv %s: first %d of %d greedy ids equal\n",
                kv == DType::kBF16 ? "bf16" : "f32", same, tokens);
    for (int E : {2, 6, 8})
      for (int d : {2, 4})
        for (bool graph : {false, true}) {
          auto cache = CudaKvCache::Create(c, 0, L, 1, 512, kv);
          ASSERT_TRUE(cache.ok());
          auto spec = GreedySelfSpeculative(*gpu, cache->get(), 0, prompt, tokens, E, d, graph, nullptr);
          ASSERT_TRUE(spec.ok()) << spec.status();
          EXPECT_EQ(*spec, *ar) << "E=" << E << " d=" << d << " graph=" << graph;
        }
    if (kv == DType::kBF16) continue;
    for (int n : {1, 4}) {  // one graph per step, as CudaStepGraphTest with the default kernels
      auto cache = CudaKvCache::Create(c, 0, L, n, 512, kv);
      ASSERT_TRUE(cache.ok());
      TokenBatch b;
      std::vector<int> in;
      for (int s = 0; s < n; ++s)
        for (int i = 0; i < P; ++i) b.Add(s, i), in.push_back(prompt[i]);
      auto x = Zeros<float>(static_cast<size_t>(n) * P * c.hidden_size);
      auto logits = Zeros<float>(static_cast<size_t>(n) * P * c.vocab_size);
      auto ids = Zeros<int>(n);
      ASSERT_TRUE(gpu->Embed(in, x.get()).ok());
      ASSERT_TRUE(gpu->Forward(0, L, b, x.get(), cache->get()).ok());
      for (int s = 0; s < n; ++s)
        ASSERT_TRUE(gpu->ExitArgmax(x.get() + (static_cast<size_t>(s) * P + P - 1) * c.hidden_size, 1, logits.get(),
                                    ids.get() + s)
                        .ok());
      std::vector<int> slots(n);
      for (int s = 0; s < n; ++s) slots[s] = s;
      auto slots_d = Up(slots);
      auto pos_d = Zeros<int>(n);
      auto graph = gpu->CaptureDecodeStep(n, ids.get(), slots_d.get(), pos_d.get(), x.get(), logits.get(), cache->get());
      ASSERT_TRUE(graph.ok()) << graph.status();
      std::vector<std::vector<int>> got(n);
      for (int t = 0; t < 48; ++t) {
        const std::vector<int> now = Down(ids);
        for (int s = 0; s < n; ++s) got[s].push_back(now[s]);
        if (t + 1 == 48) break;
        const std::vector<int> pos(n, P + t);
        ASSERT_EQ(cudaMemcpyAsync(pos_d.get(), pos.data(), n * sizeof(int), cudaMemcpyHostToDevice, gpu->stream()),
                  cudaSuccess);
        ASSERT_TRUE((*graph)->Launch(gpu->stream()).ok());
        ASSERT_TRUE(gpu->Synchronize().ok());
      }
      for (int s = 0; s < n; ++s)
        EXPECT_EQ(got[s], std::vector<int>(ar->begin(), ar->begin() + 48)) << "sequence " << s << " of " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Launch, CudaNewKernelsDemoTest, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "programmatic" : "serial"); });

}  // namespace
}  // namespace layerskip::cuda
