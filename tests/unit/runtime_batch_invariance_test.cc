// The logits of a token are bitwise identical whether it is computed alone or inside a batch of 1 to 64
// tokens of one or several sequences, and whatever the number of threads.
#include <cstring>

#include "engine/runtime/model.h"
#include "engine/util/rng.h"
#include "gtest/gtest.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

// Prefills `prompts` (one slot each) in one batch and returns the logits of every token [n, V].
std::vector<float> BatchLogits(const LoadedModel& m, const std::vector<std::vector<int>>& prompts) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, static_cast<int>(prompts.size()), m.context);
  TokenBatch b;
  std::vector<int> ids;
  for (size_t s = 0; s < prompts.size(); ++s)
    for (size_t i = 0; i < prompts[s].size(); ++i) {
      b.Add(static_cast<int>(s), static_cast<int>(i));
      ids.push_back(prompts[s][i]);
    }
  std::vector<float> x(ids.size() * c.hidden_size), logits(ids.size() * c.vocab_size);
  EXPECT_TRUE(m.model->Embed(ids, x.data()).ok());
  EXPECT_TRUE(m.model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
  EXPECT_TRUE(m.model->ExitHead(x.data(), b.size(), logits.data()).ok());
  return logits;
}

// Token by token, one at a time: the reference.
std::vector<float> AloneLogits(const LoadedModel& m, const std::vector<int>& prompt) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, 1, m.context);
  std::vector<float> out, x(c.hidden_size), logits(c.vocab_size);
  for (size_t i = 0; i < prompt.size(); ++i) {
    TokenBatch b;
    b.Add(0, static_cast<int>(i));
    EXPECT_TRUE(m.model->Embed({prompt[i]}, x.data()).ok());
    EXPECT_TRUE(m.model->Forward(0, c.num_hidden_layers, b, x.data(), &cache).ok());
    EXPECT_TRUE(m.model->ExitHead(x.data(), 1, logits.data()).ok());
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

class BatchInvarianceTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(BatchInvarianceTest, LogitsBitwiseAcrossBatchesAndThreads) {
  const LlamaConfig c = testing::SmallConfig(3, 211);
  std::vector<std::vector<int>> prompts;
  Rng rng(1);
  for (int len : {1, 7, 16, 3, 29, 8}) {  // 64 tokens in all
    prompts.emplace_back();
    for (int i = 0; i < len; ++i) prompts.back().push_back(static_cast<int>(rng.Next() % c.vocab_size));
  }
  auto ref_model = testing::RandomModel(c, GetParam(), 3, 4.0f, 1 << 20, 0.25f, /*threads=*/1);
  std::vector<std::vector<float>> ref;
  for (const auto& p : prompts) ref.push_back(AloneLogits(*ref_model, p));
  for (int threads : {1, 2, 3, 5}) {
    auto m = testing::RandomModel(c, GetParam(), 3, 4.0f, 1 << 20, 0.25f, threads);
    // All sequences in one batch of 64 tokens, then each sequence alone as one batch.
    const std::vector<float> all = BatchLogits(*m, prompts);
    size_t offset = 0;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const size_t bytes = ref[s].size() * sizeof(float);
      EXPECT_EQ(0, std::memcmp(all.data() + offset, ref[s].data(), bytes)) << "sequence " << s << " in the batch of 64, threads " << threads;
      const std::vector<float> single = BatchLogits(*m, {prompts[s]});
      EXPECT_EQ(0, std::memcmp(single.data(), ref[s].data(), bytes)) << "sequence " << s << " prefilled alone, threads " << threads;
      offset += ref[s].size();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, BatchInvarianceTest, ::testing::Values(WeightType::kF32, WeightType::kBF16));

TEST(ForwardTest, RejectsBadBatches) {
  const LlamaConfig c = testing::SmallConfig(2, 50);
  auto m = testing::RandomModel(c, WeightType::kF32, 1, 1.0f, 1 << 20, 0.25f, 1, /*context=*/8);
  KvCache cache(c, 0, 2, 2, 8);
  std::vector<float> x(c.hidden_size * 2);
  TokenBatch gap;
  gap.Add(0, 1);  // position 0 was never written
  EXPECT_EQ(m.get()->model->Forward(0, 2, gap, x.data(), &cache).code(), absl::StatusCode::kInvalidArgument);
  TokenBatch bad_slot;
  bad_slot.Add(2, 0);
  EXPECT_EQ(m->model->Forward(0, 2, bad_slot, x.data(), &cache).code(), absl::StatusCode::kInvalidArgument);
  TokenBatch past;
  past.Add(0, 8);
  EXPECT_EQ(m->model->Forward(0, 2, past, x.data(), &cache).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->model->Embed({50}, x.data()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->model->Forward(0, 3, gap, x.data(), &cache).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace layerskip
