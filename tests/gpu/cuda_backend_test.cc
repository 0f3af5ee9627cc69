// The CUDA backend through the Backend interface (engine/runtime/backend.h), against the CPU backend and
// against itself: decoding written once (engine/decode/) is lossless on the device (greedy self-speculative
// == greedy autoregressive token for token, batch 1 and a batch of 8 mixed prompt lengths, E in {1, L/2,
// L-1}, d in {1, 4, adaptive, auto}); its logits equal the CPU backend's at every exit layer within the
// tolerance of docs/engine.md; the backend contract (pieces == at once, heads on rows, activations,
// truncate, bad batches). Skipped without a GPU; label `gpu`.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/decode/cost_calibration.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/runtime/cuda/cuda_backend.h"
#include "engine/runtime/cuda/cuda_decode.h"
#include "engine/runtime/factory/create_backend.h"
#include "gtest/gtest.h"
#include "tests/gpu/cpu_reference.h"
#include "tests/gpu/cuda_model_util.h"
#include "kernels/sampling.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/support/decode_runs.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

using ::layerskip::cuda::testing::RandomIds;

std::unique_ptr<LoadedModel> LoadDemo(const char* rel, WeightType type = WeightType::kBF16) {
  ModelLoadOptions o;
  o.threads = 4;
  o.max_context = 512;
  o.type = type;
  auto m = LoadModelDir(cuda::testing::SourceDir() / rel, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

DecodeOptions SelfSpec(int e, int d) {
  DecodeOptions o;
  o.mode = DecodeMode::kSelfSpeculative;
  o.exit_layer = e;
  o.speculation.speculations = d;
  return o;
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// Greedy self-speculative == greedy autoregressive on the CUDA backend, token for token.
TEST_F(CudaBackendTest, SelfSpeculativeEqualsAutoregressive) {
  auto m = LoadDemo("models/layerskip-demo");
  ASSERT_TRUE(m);
  const int L = m->weights->config.num_hidden_layers, V = m->weights->config.vocab_size;
  auto made = CreateBackend(*m, DeviceSpec::Cuda(0), 8);
  ASSERT_TRUE(made.ok()) << made.status();
  Backend& gpu = **made;
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(RandomIds(1 + 9 * i, V, 50 + i));  // 1 .. 64 tokens
  const int max_tokens = 40;
  const auto ar = testing::Decode(gpu, prompts, DecodeOptions{}, max_tokens);
  ASSERT_EQ(ar.size(), 8u);
  for (size_t i = 0; i < prompts.size(); ++i)  // batch 1 == batch 8 (batch-invariant kernels)
    EXPECT_EQ(testing::Decode(gpu, {prompts[i]}, DecodeOptions{}, max_tokens)[0], ar[i]) << "prompt " << i;
  const auto cost = std::make_shared<const CostModel>(DefaultCostModel(*m->model));
  int64_t drafted = 0, accepted = 0;
  for (int e : {1, L / 2, L - 1}) {
    for (const char* d : {"1", "4", "adaptive", "auto"}) {
      DecodeOptions o = SelfSpec(e, 4);
      if (std::string(d) == "1") o.speculation.speculations = 1;
      if (std::string(d) == "adaptive") o.speculation.adaptive = true;
      if (std::string(d) == "auto") {
        o.auto_speculations = true;
        o.cost = cost;
      }
      std::vector<SpecStats> stats;
      EXPECT_EQ(testing::Decode(gpu, prompts, o, max_tokens, &stats), ar) << "batch 8, E=" << e << " d=" << d;
      for (const SpecStats& s : stats) {
        drafted += s.drafted;
        accepted += s.accepted;
      }
      EXPECT_EQ(testing::Decode(gpu, {prompts[3]}, o, max_tokens)[0], ar[3]) << "batch 1, E=" << e << " d=" << d;
    }
  }
  EXPECT_GT(drafted, 0);
  EXPECT_GT(accepted, 0);
  auto* cuda_backend = dynamic_cast<cuda::CudaBackend*>(&gpu);
  ASSERT_NE(cuda_backend, nullptr);
  EXPECT_GT(cuda_backend->graphs_captured(), 0) << "decode steps should replay CUDA graphs";
  std::printf("cuda backend: %lld of %lld drafts accepted; %d step graphs captured\n", static_cast<long long>(accepted),
              static_cast<long long>(drafted), cuda_backend->graphs_captured());
}

// The decode fast path's CUDA graphs change nothing: the same ids with graphs off (every step eager), for
// autoregressive, self-speculative and early-exit decoding of a mixed batch.
TEST_F(CudaBackendTest, GraphsOffGiveTheSameIds) {
  auto m = LoadDemo("models/layerskip-demo");
  ASSERT_TRUE(m);
  const int V = m->weights->config.vocab_size;
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back(RandomIds(2 + 11 * i, V, 80 + i));
  DecodeOptions ee;
  ee.mode = DecodeMode::kEarlyExit;
  ee.exit_layer = 4;
  for (const DecodeOptions& o : {DecodeOptions{}, SelfSpec(6, 4), SelfSpec(3, 2), ee}) {
    std::vector<std::vector<int>> got[2];
    for (int graphs : {0, 1}) {
      auto made = cuda::CudaBackend::Create(*m->weights, DeviceSpec::Cuda(0), 5, m->context);
      ASSERT_TRUE(made.ok()) << made.status();
      (*made)->set_use_graphs(graphs == 1);
      got[graphs] = testing::Decode(**made, prompts, o, 30);
      if (graphs == 1) EXPECT_GT((*made)->graphs_captured(), 0);
      else EXPECT_EQ((*made)->graphs_captured(), 0);
    }
    EXPECT_EQ(got[0], got[1]) << DecodeModeName(o.mode) << " E=" << o.exit_layer;
  }
}

// The backend's decoding (generic step code + the graph fast path) gives the ids of the single-sequence
// reference loop (cuda_decode.h: one graph per round), autoregressive and self-speculative.
TEST_F(CudaBackendTest, MatchesTheSingleSequenceLoop) {
  auto m = LoadDemo("models/layerskip-demo");
  ASSERT_TRUE(m);
  const int L = m->weights->config.num_hidden_layers;
  auto made = cuda::CudaBackend::Create(*m->weights, DeviceSpec::Cuda(0), 1, m->context);
  ASSERT_TRUE(made.ok()) << made.status();
  cuda::CudaBackend& b = **made;
  const std::vector<int> prompt = RandomIds(17, m->weights->config.vocab_size, 99);
  const auto ours = testing::Decode(b, {prompt}, DecodeOptions{}, 32);
  ASSERT_EQ(ours.size(), 1u);
  b.Reset(0);
  auto ref = cuda::GreedyAutoregressive(b.model(), &b.cache(), 0, prompt, 32, L);
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ours[0], *ref);
  b.Reset(0);
  auto spec = cuda::GreedySelfSpeculative(b.model(), &b.cache(), 0, prompt, 32, 6, 4, /*use_graph=*/true);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(*spec, *ref);
  b.Reset(0);
  EXPECT_EQ(testing::Decode(b, {prompt}, SelfSpec(6, 4), 32)[0], *ref);
}

// The cost model of automatic speculation measured on the device itself (what --device cuda:0 uses).
TEST_F(CudaBackendTest, CalibratesOnTheDevice) {
  auto m = LoadDemo("models/layerskip-demo");
  ASSERT_TRUE(m);
  auto gpu = CreateBackend(*m, DeviceSpec::Cuda(0), 1);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  CalibrationOptions o;
  o.probe_tokens = DefaultProbeTokens(m->tokenizer.get(), m->weights->config.vocab_size);
  o.budget_seconds = 0.5;
  auto cost = CalibrateCostModel(**gpu, o);
  ASSERT_TRUE(cost.ok()) << cost.status();
  EXPECT_TRUE(cost->Valid());
  EXPECT_EQ(cost->source, "measured on cuda:0");
  EXPECT_EQ((*gpu)->length(0, 0), 0);  // slot 0 free again
  std::printf("demo on cuda:0: layer %.1f us (1 row) %.1f us (16 rows), head %.1f us; prior acceptance at E=6: %.2f\n",
              1e6 * cost->layer_seconds[0], 1e6 * cost->layer_seconds[15], 1e6 * cost->head_seconds[0],
              cost->prior_acceptance[6]);
}

// Early exit and sampling run through the same code: early exit equals the CPU backend's ids on a model
// whose exits are confident (the demo), and a sampled self-speculative run repeats with its seed.
TEST_F(CudaBackendTest, EarlyExitAndSampling) {
  auto m = LoadDemo("models/layerskip-demo");
  ASSERT_TRUE(m);
  auto gpu = CreateBackend(*m, DeviceSpec::Cuda(0), 2);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<int> p = RandomIds(12, m->weights->config.vocab_size, 3);
  DecodeOptions ee;
  ee.mode = DecodeMode::kEarlyExit;
  ee.exit_layer = 6;
  const auto ids = testing::Decode(**gpu, {p, p}, ee, 16);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);
  for (int l = 6; l < m->weights->config.num_hidden_layers; ++l) EXPECT_EQ((*gpu)->length(l, 0), 0);
  GenerationParams gp;
  gp.max_tokens = 24;
  gp.sampling.temperature = 0.8f;
  gp.sampling.top_k = 50;
  gp.seed = 5;
  auto a = GenerateBatch(**gpu, {p}, {gp}, SelfSpec(6, 3));
  auto b = GenerateBatch(**gpu, {p}, {gp}, SelfSpec(6, 3));
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ((*a)[0].ids, (*b)[0].ids);
  EXPECT_EQ(static_cast<int>((*a)[0].ids.size()), 24);
}

// Logits of the CUDA backend vs the CPU backend at every exit layer (a 20-token prefill, then 4 decode
// steps), within 1e-4 of the row's largest |logit| (docs/engine.md's tolerance for f32 activations with
// sums in other orders); the device argmax equals the argmax of the device's own logits.
class CudaBackendLogitsTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaBackendLogitsTest, MatchCpuAtEveryExitLayer) {
  auto m = LoadDemo(GetParam());
  ASSERT_TRUE(m);
  const LlamaConfig& c = m->weights->config;
  const int L = c.num_hidden_layers, V = c.vocab_size;
  CpuBackend cpu(m->model.get(), 1, m->context);
  auto gpu = CreateBackend(*m, DeviceSpec::Cuda(0), 1);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  const std::vector<int> ids = RandomIds(24, V, 9);
  double worst = 0;
  for (int begin = 0; begin < 24;) {
    const int n = begin == 0 ? 20 : 1;
    TokenBatch batch;
    std::vector<int> rows;
    for (int i = 0; i < n; ++i) {
      batch.Add(0, begin + i);
      rows.push_back(i);
    }
    const std::vector<int> step(ids.begin() + begin, ids.begin() + begin + n);
    auto xc = cpu.NewActivations(n);
    auto xg = (*gpu)->NewActivations(n);
    ASSERT_TRUE(xc.ok() && xg.ok());
    ASSERT_TRUE(cpu.Embed(step, **xc).ok());
    ASSERT_TRUE((*gpu)->Embed(step, **xg).ok());
    for (int l = 0; l < L; ++l) {
      ASSERT_TRUE(cpu.Forward(l, l + 1, batch, **xc).ok());
      const absl::Status s = (*gpu)->Forward(l, l + 1, batch, **xg);
      ASSERT_TRUE(s.ok()) << s;
      std::vector<float> want(static_cast<size_t>(n) * V), got(static_cast<size_t>(n) * V);
      std::vector<int> argmax(n);
      ASSERT_TRUE(cpu.ExitHead(**xc, rows, want.data()).ok());
      ASSERT_TRUE((*gpu)->ExitHead(**xg, rows, got.data()).ok());
      ASSERT_TRUE((*gpu)->ExitArgmax(**xg, rows, argmax.data()).ok());
      for (int r = 0; r < n; ++r) {
        const float* w = want.data() + static_cast<size_t>(r) * V;
        const float* g = got.data() + static_cast<size_t>(r) * V;
        float scale = 0;
        for (int v = 0; v < V; ++v) scale = std::max(scale, std::fabs(w[v]));
        for (int v = 0; v < V; ++v) {
          worst = std::max(worst, static_cast<double>(std::fabs(g[v] - w[v]) / scale));
          ASSERT_NEAR(g[v], w[v], 1e-4f * scale) << "exit " << l + 1 << " position " << begin + r << " id " << v;
        }
        EXPECT_EQ(argmax[r], cpu::Argmax(g, V)) << "exit " << l + 1 << " position " << begin + r;
      }
    }
    begin += n;
  }
  std::printf("%s: largest |gpu - cpu| / max|logit| over every exit layer: %.3g\n", GetParam(), worst);
}

INSTANTIATE_TEST_SUITE_P(Models, CudaBackendLogitsTest, ::testing::Values("models/layerskip-demo", "models/tiny-random"));

// The Backend contract on the device: forward in pieces equals forward at once bitwise; heads on scattered
// rows equal heads on each row alone; a draft vocabulary restricts DraftArgmax; activations round-trip;
// truncate and reset; bad batches are errors that change nothing.
TEST_F(CudaBackendTest, BackendContract) {
  auto m = LoadDemo("models/tiny-random");
  ASSERT_TRUE(m);
  const LlamaConfig& c = m->weights->config;
  const int L = c.num_hidden_layers, V = c.vocab_size, D = c.hidden_size;
  auto whole = CreateBackend(*m, DeviceSpec::Cuda(0), 2);
  auto piece = CreateBackend(*m, DeviceSpec::Cuda(0), 2);
  ASSERT_TRUE(whole.ok() && piece.ok()) << whole.status() << piece.status();
  EXPECT_EQ((*whole)->device().ToString(), "cuda:0");
  const std::vector<int> ids = RandomIds(9, V, 4);
  TokenBatch all;
  for (int i = 0; i < 9; ++i) all.Add(1, i);
  auto x = (*whole)->NewActivations(9);
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE((*whole)->Embed(ids, **x).ok());
  ASSERT_TRUE((*whole)->Forward(0, L, all, **x).ok());
  std::vector<float> want(9 * D), got;
  ASSERT_TRUE((*whole)->Download(**x, want.data()).ok());
  const int mid = std::max(1, L / 2);
  for (int begin = 0; begin < 9; begin += 4) {
    const int n = std::min(4, 9 - begin);
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(1, begin + i);
    auto y = (*piece)->NewActivations(n);
    ASSERT_TRUE(y.ok());
    ASSERT_TRUE((*piece)->Embed(std::vector<int>(ids.begin() + begin, ids.begin() + begin + n), **y).ok());
    ASSERT_TRUE((*piece)->Forward(0, mid, b, **y).ok());
    ASSERT_TRUE((*piece)->Forward(mid, L, b, **y).ok());
    std::vector<float> h(static_cast<size_t>(n) * D);
    ASSERT_TRUE((*piece)->Download(**y, h.data()).ok());
    got.insert(got.end(), h.begin(), h.end());
  }
  EXPECT_EQ(0, std::memcmp(want.data(), got.data(), sizeof(float) * want.size())) << "pieces differ from at once";
  // Heads on scattered rows.
  const std::vector<int> rows = {8, 0, 5, 6};
  std::vector<float> logits(rows.size() * V);
  std::vector<int> argmax(rows.size());
  ASSERT_TRUE((*whole)->ExitHead(**x, rows, logits.data()).ok());
  ASSERT_TRUE((*whole)->ExitArgmax(**x, rows, argmax.data()).ok());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<float> one(V);
    ASSERT_TRUE((*whole)->ExitHead(**x, {rows[i]}, one.data()).ok());
    EXPECT_EQ(0, std::memcmp(one.data(), logits.data() + i * V, sizeof(float) * V)) << "row " << rows[i];
    EXPECT_EQ(argmax[i], cpu::Argmax(logits.data() + i * V, V));
  }
  // A draft vocabulary: the draft argmax is the exit logits' argmax over the subset.
  std::vector<int> subset;
  for (int v = 0; v < V; v += 3) subset.push_back(v);
  ASSERT_TRUE((*whole)->SetDraftVocabulary(subset).ok());
  EXPECT_EQ((*whole)->draft_vocab_size(), static_cast<int>(subset.size()));
  std::vector<int> drafts(rows.size());
  ASSERT_TRUE((*whole)->DraftArgmax(**x, rows, drafts.data()).ok());
  for (size_t i = 0; i < rows.size(); ++i) {
    int best = subset[0];
    for (int v : subset)
      if (logits[i * V + v] > logits[i * V + best]) best = v;
    EXPECT_EQ(drafts[i], best);
  }
  ASSERT_TRUE((*whole)->SetDraftVocabulary({}).ok());
  // CopyRows and Upload.
  auto z = (*whole)->NewActivations(3);
  ASSERT_TRUE(z.ok());
  ASSERT_TRUE((*whole)->CopyRows(**x, 6, 3, **z, 0).ok());
  std::vector<float> tail(3 * D);
  ASSERT_TRUE((*whole)->Download(**z, tail.data()).ok());
  EXPECT_EQ(0, std::memcmp(tail.data(), want.data() + 6 * D, sizeof(float) * tail.size()));
  ASSERT_TRUE((*whole)->Upload(want.data(), **z).ok());
  ASSERT_TRUE((*whole)->Download(**z, tail.data()).ok());
  EXPECT_EQ(0, std::memcmp(tail.data(), want.data(), sizeof(float) * tail.size()));
  EXPECT_EQ((*whole)->CopyRows(**x, 8, 2, **z, 0).code(), absl::StatusCode::kInvalidArgument);
  // Truncate, bad batches, reset.
  Backend& b = **piece;
  b.TruncateLayers(1, mid, L, 5);
  EXPECT_EQ(b.length(0, 1), 9);
  EXPECT_EQ(b.length(L - 1, 1), 5);
  TokenBatch next;
  next.Add(1, 9);
  auto one = b.NewActivations(1);
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(b.Embed({1}, **one).ok());
  EXPECT_EQ(b.Forward(0, L, next, **one).code(), absl::StatusCode::kFailedPrecondition);
  TokenBatch gap;
  gap.Add(0, 1);
  EXPECT_EQ(b.Forward(0, L, gap, **one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.Embed({V}, **one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.length(0, 0), 0);
  b.Reset(1);
  for (int l = 0; l < L; ++l) EXPECT_EQ(b.length(l, 1), 0);
  // A device that does not exist.
  auto missing = CreateBackend(*m, DeviceSpec::Cuda(1000), 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message().rfind("cuda:1000: ", 0), 0u) << missing.status();
}

}  // namespace
}  // namespace layerskip
