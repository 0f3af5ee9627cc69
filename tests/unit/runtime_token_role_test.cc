// A token's role picks its kernel path (engine/runtime/token_batch.h TokenRole, kernels/cpu_features.h
// CpuKernelPair): with the pair (amx, avx512-bf16), prompt rows compute bitwise as on amx alone and
// generated rows as on avx512-bf16 alone, in one call or split into several; decoding marks rows by
// position (prompt vs generated, also when a lost cache is recomputed), so self-speculative decoding stays
// equal to autoregressive decoding and batches equal single sequences. Skipped on hosts without AMX.
#include <cstring>
#include <vector>

#include "engine/decode/autoregressive_step.h"
#include "engine/decode/self_speculative.h"
#include "engine/decode/speculative_phases.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/util/rng.h"
#include "gtest/gtest.h"
#include "kernels/cpu_features.h"
#include "tests/support/decode_runs.h"
#include "tests/support/random_vector.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

using testing::RandomIds;

using cpu::CpuKernelPair;
using cpu::CpuKernels;

constexpr CpuKernelPair kSplit{CpuKernels::kAmx, CpuKernels::kAvx512Bf16};
constexpr CpuKernelPair kAmxOnly{CpuKernels::kAmx, CpuKernels::kAmx};
constexpr CpuKernelPair kBf16Only{CpuKernels::kAvx512Bf16, CpuKernels::kAvx512Bf16};

// Runs the test body with a pair forced, and restores the process's pair afterwards.
class TokenRoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const cpu::CpuFeatures& f = cpu::HostCpuFeatures();
    if (!cpu::CpuKernelsSupported(CpuKernels::kAmx, f) || !cpu::AmxPermission().ok())
      GTEST_SKIP() << "host lacks AMX-BF16 (or Linux refuses the tiles): " << f.Describe();
  }
  void TearDown() override { cpu::ResetCpuKernelsForTesting(); }
};


// One sequence's rows [first, first + ids.size()) in slot `slot` of `cache`, roles from `prompt_tokens`,
// under `pair`: returns the final hidden states [n, D] followed by the logits [n, V].
std::vector<float> RunRows(const LoadedModel& m, KvCache& cache, CpuKernelPair pair, int slot, int first,
                       const std::vector<int>& ids, int prompt_tokens) {
  cpu::SetCpuKernelPairForTesting(pair);
  const LlamaConfig& c = m.weights->config;
  TokenBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.AddToken(slot, first + static_cast<int>(i), prompt_tokens);
  std::vector<float> x(ids.size() * c.hidden_size), logits(ids.size() * c.vocab_size);
  EXPECT_TRUE(m.model->Embed(ids, x.data()).ok());
  EXPECT_TRUE(m.model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
  EXPECT_TRUE(m.model->ExitHead(x.data(), b.size(), logits.data()).ok());
  x.insert(x.end(), logits.begin(), logits.end());
  return x;
}

bool Same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The role reaches the kernel: under the split pair, prompt rows' hidden states are amx's bits (which
// differ from avx512-bf16's), generated rows' are avx512-bf16's; the heads run on the generated path.
TEST_F(TokenRoleTest, EachRoleRunsOnItsPath) {
  const LlamaConfig c = testing::SmallConfig(3, 211);
  auto m = testing::RandomModel(c, WeightType::kBF16, 5, 4.0f);
  const std::vector<int> prompt = RandomIds(24, c.vocab_size, 9);
  auto fresh = [&](CpuKernelPair pair, int prompt_tokens) {
    KvCache cache(c, 0, c.num_hidden_layers, 1, m->context);
    return RunRows(*m, cache, pair, 0, 0, prompt, prompt_tokens);
  };
  const int n = static_cast<int>(prompt.size());
  const std::vector<float> amx = fresh(kAmxOnly, n), bf16 = fresh(kBf16Only, n);
  const size_t H = static_cast<size_t>(n) * c.hidden_size;  // the hidden states; the logits follow
  auto hidden = [&](const std::vector<float>& v) { return std::vector<float>(v.begin(), v.begin() + H); };
  auto logits = [&](const std::vector<float>& v) { return std::vector<float>(v.begin() + H, v.end()); };
  ASSERT_FALSE(Same(hidden(amx), hidden(bf16))) << "amx and avx512-bf16 layers give the same bits";
  const std::vector<float> split_prompt = fresh(kSplit, n), split_generated = fresh(kSplit, 0);
  EXPECT_TRUE(Same(hidden(split_prompt), hidden(amx))) << "prompt rows did not run on the prompt path (amx)";
  EXPECT_TRUE(Same(split_generated, bf16)) << "generated rows did not run on the generated path (avx512-bf16)";
  // The heads run on the generated path for every row: the prompt's logits under (amx, avx512-bf16) are
  // avx512-bf16's head on amx's hidden states.
  cpu::SetCpuKernelPairForTesting(kBf16Only);
  std::vector<float> head(static_cast<size_t>(n) * c.vocab_size);
  ASSERT_TRUE(m->model->ExitHead(amx.data(), n, head.data()).ok());
  EXPECT_TRUE(Same(logits(split_prompt), head));
}

// On the trained demo model the prompt path shows in the logits of a prompt's last token (what picks the
// first generated token): they differ between (amx, avx512-bf16) and avx512-bf16 alone.
TEST_F(TokenRoleTest, PromptPathShowsInTheDemoModelsLastLogits) {
  ModelLoadOptions load;
  load.threads = 1;
  load.max_context = 256;
  auto loaded = LoadModelDir(std::string(LAYERSKIP_SOURCE_DIR) + "/models/layerskip-demo", load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LoadedModel& m = **loaded;
  const std::vector<int> prompt = m.tokenizer->Encode(
      "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, path):\n        self.path = path\n", true);
  const LlamaConfig& c = m.weights->config;
  const int n = static_cast<int>(prompt.size());
  auto last_logits = [&](CpuKernelPair pair) {
    KvCache cache(c, 0, c.num_hidden_layers, 1, m.context);
    const std::vector<float> out = RunRows(m, cache, pair, 0, 0, prompt, n);
    return std::vector<float>(out.end() - c.vocab_size, out.end());
  };
  EXPECT_FALSE(Same(last_logits(kSplit), last_logits(kBf16Only)));
  EXPECT_TRUE(Same(last_logits(kSplit), last_logits(kSplit)));
}

// A batch of several sequences whose rows alternate between roles (prompt rows and generated rows of each
// slot, slot after slot) equals each run computed alone on its role's single path: the per-run matmuls
// use the right rows of x and y.
TEST_F(TokenRoleTest, MixedBatchEqualsEachRunAlone) {
  const LlamaConfig c = testing::SmallConfig(3, 211);
  auto m = testing::RandomModel(c, WeightType::kBF16, 6, 4.0f);
  struct Part {
    int slot, prompt_len, cached, rows;
  };
  // slot 0: prompt rows 0..6 then generated 7..9; slot 1: generated rows 5..7 (prompt of 5 cached first);
  // slot 2: prompt rows 0..3 only; slot 3: prompt rows 2..4 (prompt of 5, 2 cached) then generated 5.
  const std::vector<Part> parts = {{0, 7, 0, 10}, {1, 5, 5, 3}, {2, 4, 0, 4}, {3, 5, 2, 4}};
  std::vector<std::vector<int>> ids;
  for (size_t p = 0; p < parts.size(); ++p) ids.push_back(RandomIds(parts[p].cached + parts[p].rows, c.vocab_size, 40 + p));
  // Reference: per slot, the cached prefix on the prompt path, then each run of one role alone on its path.
  KvCache ref_cache(c, 0, c.num_hidden_layers, 4, m->context);
  std::vector<std::vector<float>> ref(parts.size());
  const int D = c.hidden_size;
  for (size_t p = 0; p < parts.size(); ++p) {
    const Part& q = parts[p];
    if (q.cached > 0)
      RunRows(*m, ref_cache, kAmxOnly, q.slot, 0, std::vector<int>(ids[p].begin(), ids[p].begin() + q.cached), q.prompt_len);
    for (int i = q.cached; i < q.cached + q.rows;) {
      int j = i;
      while (j < q.cached + q.rows && (j < q.prompt_len) == (i < q.prompt_len)) ++j;
      const std::vector<float> out = RunRows(*m, ref_cache, i < q.prompt_len ? kAmxOnly : kBf16Only, q.slot, i,
                                         std::vector<int>(ids[p].begin() + i, ids[p].begin() + j), q.prompt_len);
      ref[p].insert(ref[p].end(), out.begin(), out.begin() + static_cast<size_t>(j - i) * D);  // hidden only
      i = j;
    }
  }
  // One batch, split pair.
  cpu::SetCpuKernelPairForTesting(kSplit);
  KvCache cache(c, 0, c.num_hidden_layers, 4, m->context);
  for (size_t p = 0; p < parts.size(); ++p)
    if (parts[p].cached > 0)
      RunRows(*m, cache, kSplit, parts[p].slot, 0, std::vector<int>(ids[p].begin(), ids[p].begin() + parts[p].cached),
          parts[p].prompt_len);
  TokenBatch b;
  std::vector<int> all_ids;
  for (size_t p = 0; p < parts.size(); ++p)
    for (int i = parts[p].cached; i < parts[p].cached + parts[p].rows; ++i) {
      b.AddToken(parts[p].slot, i, parts[p].prompt_len);
      all_ids.push_back(ids[p][i]);
    }
  std::vector<float> x(all_ids.size() * D);
  ASSERT_TRUE(m->model->Embed(all_ids, x.data()).ok());
  ASSERT_TRUE(m->model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
  size_t row = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    const std::vector<float> got(x.begin() + row * D, x.begin() + (row + parts[p].rows) * D);
    EXPECT_TRUE(Same(got, ref[p])) << "slot " << parts[p].slot;
    row += parts[p].rows;
  }
}

// Layouts and drafts mark rows by position: verification rows below the prompt length are prompt rows.
TEST(TokenRoleLayoutTest, VerificationRowsTakeTheirRoleFromThePromptLength) {
  auto layout = LayoutVerification({{0, 0, 6, 2, 4}, {1, 9, 3, 2, 4}});
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::vector<TokenRole> roles;
  for (int i = 0; i < layout->batch.size(); ++i) roles.push_back(layout->batch.role(i));
  const TokenRole P = TokenRole::kPrompt, G = TokenRole::kGenerated;
  EXPECT_EQ(roles, (std::vector<TokenRole>{P, P, P, P, G, G, G, G, G}));
  TokenBatch plain;
  plain.Add(0, 0);
  plain.slots.push_back(0);  // a batch built without roles: generated
  plain.positions.push_back(1);
  EXPECT_EQ(plain.role(0), G);
  EXPECT_EQ(plain.role(1), G);
  EXPECT_EQ(RoleOf(3, 4), P);
  EXPECT_EQ(RoleOf(4, 4), G);
}

// Under the split pair: greedy self-speculative ids equal autoregressive ids (batch and alone, several E
// and d), batched autoregressive equals each sequence alone, and a sequence whose cache is lost
// (ForgetCache: prompt and generated tokens recomputed in one step) continues with the same tokens and the
// same KV cache bits as one that never lost it (its generated tokens stay on the generated path).
TEST_F(TokenRoleTest, DecodingIsLosslessUnderTheSplitPair) {
  cpu::SetCpuKernelPairForTesting(kSplit);
  const LlamaConfig c = testing::SmallConfig(6);
  auto m = testing::RandomModel(c, WeightType::kBF16, 7, 8.0f, 2);
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 5; ++i) prompts.push_back(RandomIds(1 + 6 * i, c.vocab_size, 200 + i));
  const int max_tokens = 16;
  std::vector<std::vector<int>> ref;
  for (const auto& p : prompts) ref.push_back(testing::Decode(*m, {p}, DecodeOptions{}, max_tokens)[0]);
  EXPECT_EQ(testing::Decode(*m, prompts, DecodeOptions{}, max_tokens), ref) << "batched autoregressive";
  int64_t accepted = 0, drafted = 0;
  for (int e : {1, 3, 5}) {
    for (int d : {1, 3, 6}) {
      DecodeOptions o;
      o.mode = DecodeMode::kSelfSpeculative;
      o.exit_layer = e;
      o.speculation.speculations = d;
      std::vector<SpecStats> stats;
      EXPECT_EQ(testing::Decode(*m, prompts, o, max_tokens, &stats), ref) << "E=" << e << " d=" << d;
      for (const SpecStats& s : stats) {
        accepted += s.accepted;
        drafted += s.drafted;
      }
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);

  // A lost cache, recomputed: same tokens, same cache bits.
  const int L = c.num_hidden_layers;
  KvCache a_cache(c, 0, L, 1, m->context), b_cache(c, 0, L, 1, m->context);
  CpuBackend a(m->model.get(), &a_cache), b(m->model.get(), &b_cache);
  GenerationParams params;
  params.max_tokens = 12;
  Sequence sa(0, prompts[3], params), sb(0, prompts[3], params);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(AutoregressiveStep(a, {&sa}, L).ok());
    ASSERT_TRUE(AutoregressiveStep(b, {&sb}, L).ok());
  }
  b.Reset(0);
  sb.ForgetCache();
  while (!sa.finished()) ASSERT_TRUE(AutoregressiveStep(a, {&sa}, L).ok());
  while (!sb.finished()) ASSERT_TRUE(AutoregressiveStep(b, {&sb}, L).ok());
  EXPECT_EQ(sa.generated(), sb.generated());
  EXPECT_EQ(sa.generated(), ref[3].size() >= 12 ? std::vector<int>(ref[3].begin(), ref[3].begin() + 12) : ref[3]);
  ASSERT_EQ(a_cache.length(0, 0), b_cache.length(0, 0));
  for (int l = 0; l < L; ++l)
    for (int p = 0; p < a_cache.length(l, 0); ++p) {
      ASSERT_EQ(0, std::memcmp(a_cache.k(l, 0, p), b_cache.k(l, 0, p), sizeof(float) * a_cache.kv_dim()))
          << "K layer " << l << " position " << p;
      ASSERT_EQ(0, std::memcmp(a_cache.v(l, 0, p), b_cache.v(l, 0, p), sizeof(float) * a_cache.kv_dim()))
          << "V layer " << l << " position " << p;
    }
}

}  // namespace
}  // namespace layerskip
