// Tests for Matrix and RandomModelWeights (engine/model/weights.h): alignment, shapes, determinism, and the
// statistics of the random weights.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

#include "engine/model/weights.h"
#include "engine/util/bf16.h"

namespace layerskip {
namespace {

LlamaConfig SmallConfig(bool tied) {
  LlamaConfig c;
  c.vocab_size = 1000;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.tie_word_embeddings = tied;
  return c;
}

TEST(ModelWeights, MatrixIsAlignedAndZeroed) {
  for (WeightType type : {WeightType::kBF16, WeightType::kF32}) {
    Matrix m(type, 3, 5);
    EXPECT_EQ(m.type(), type);
    EXPECT_EQ(m.rows(), 3);
    EXPECT_EQ(m.cols(), 5);
    EXPECT_EQ(m.bytes(), 15u * (type == WeightType::kBF16 ? 2 : 4));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m.data()) % 64, 0u);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 5; ++c) EXPECT_EQ(m.At(r, c), 0.0f);
    }
  }
  Matrix b(WeightType::kBF16, 2, 2);
  static_cast<uint16_t*>(b.data())[3] = F32ToBf16(-1.5f);
  EXPECT_EQ(b.At(1, 1), -1.5f);
  Matrix f(WeightType::kF32, 2, 2);
  static_cast<float*>(f.data())[2] = 0.25f;
  EXPECT_EQ(f.At(1, 0), 0.25f);
  Matrix empty(WeightType::kF32, 0, 8);
  EXPECT_EQ(empty.bytes(), 0u);
  EXPECT_NE(empty.data(), nullptr);
  EXPECT_STREQ(WeightTypeName(WeightType::kBF16), "bf16");
  EXPECT_STREQ(WeightTypeName(WeightType::kF32), "f32");
}

TEST(ModelWeights, RandomShapes) {
  ModelWeights w = RandomModelWeights(SmallConfig(false), WeightType::kBF16, 1);
  EXPECT_EQ(w.first_layer, 0);
  EXPECT_EQ(w.end_layer, 2);
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.embed->rows(), 1000);
  EXPECT_EQ(w.embed->cols(), 64);
  EXPECT_NE(w.embed.get(), w.lm_head.get());
  EXPECT_EQ(w.lm_head->rows(), 1000);
  const LayerWeights& l = w.layer(1);
  EXPECT_EQ(l.wq->rows(), 64);
  EXPECT_EQ(l.wk->rows(), 32);
  EXPECT_EQ(l.wv->rows(), 32);
  EXPECT_EQ(l.wo->rows(), 64);
  EXPECT_EQ(l.wo->cols(), 64);
  EXPECT_EQ(l.w_gate->rows(), 160);
  EXPECT_EQ(l.w_up->cols(), 64);
  EXPECT_EQ(l.w_down->rows(), 64);
  EXPECT_EQ(l.w_down->cols(), 160);
  EXPECT_EQ(l.attn_norm.size(), 64u);
  EXPECT_EQ(w.final_norm.size(), 64u);
  const size_t mats = 2 * 1000 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 160 * 64 * 3);
  EXPECT_EQ(w.bytes(), mats * 2 + 5 * 64 * 4);

  ModelWeights tied = RandomModelWeights(SmallConfig(true), WeightType::kF32, 1);
  EXPECT_EQ(tied.embed.get(), tied.lm_head.get());
  EXPECT_EQ(tied.bytes(), (mats - 1000 * 64) * 4 + 5 * 64 * 4);
}

TEST(ModelWeights, RandomIsDeterministic) {
  ModelWeights a = RandomModelWeights(SmallConfig(false), WeightType::kBF16, 42);
  ModelWeights b = RandomModelWeights(SmallConfig(false), WeightType::kBF16, 42);
  ModelWeights c = RandomModelWeights(SmallConfig(false), WeightType::kBF16, 43);
  ModelWeights f = RandomModelWeights(SmallConfig(false), WeightType::kF32, 42);
  EXPECT_EQ(std::memcmp(a.embed->data(), b.embed->data(), a.embed->bytes()), 0);
  EXPECT_EQ(std::memcmp(a.layer(1).w_down->data(), b.layer(1).w_down->data(), a.layer(1).w_down->bytes()), 0);
  EXPECT_EQ(a.layer(0).attn_norm, b.layer(0).attn_norm);
  EXPECT_NE(std::memcmp(a.embed->data(), c.embed->data(), a.embed->bytes()), 0);
  // Different tensors get different values.
  EXPECT_NE(std::memcmp(a.layer(0).wq->data(), a.layer(0).wo->data(), a.layer(0).wq->bytes()), 0);
  EXPECT_NE(a.layer(0).attn_norm, a.layer(0).mlp_norm);
  // The bf16 weights are the f32 weights rounded.
  for (int64_t i = 0; i < a.embed->rows() * a.embed->cols(); ++i) {
    ASSERT_EQ(a.embed->bf16()[i], F32ToBf16(f.embed->f32()[i])) << i;
  }
}

TEST(ModelWeights, RandomStatistics) {
  ModelWeights w = RandomModelWeights(SmallConfig(false), WeightType::kF32, 7);
  const Matrix& m = *w.embed;  // 64000 values ~ N(0, 0.02)
  const int64_t n = m.rows() * m.cols();
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += m.f32()[i];
    sq += double(m.f32()[i]) * m.f32()[i];
  }
  const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(sd, 0.02, 0.001);
  double nsum = 0;
  for (float x : w.final_norm) nsum += x;
  EXPECT_NEAR(nsum / w.final_norm.size(), 1.0, 0.05);  // norms ~ 1 + N(0, 0.1)
  for (float x : w.layer(0).attn_norm) {
    EXPECT_GT(x, 0.5f);
    EXPECT_LT(x, 1.5f);
  }
}

TEST(ModelWeights, RandomDefaultsHeadDimAndKvHeads) {
  LlamaConfig c = SmallConfig(true);
  c.head_dim = 0;
  c.num_key_value_heads = 0;
  ModelWeights w = RandomModelWeights(c, WeightType::kBF16, 3);
  EXPECT_EQ(w.config.head_dim, 16);
  EXPECT_EQ(w.config.num_key_value_heads, 4);
  EXPECT_EQ(w.layer(0).wk->rows(), 64);
}

// A Llama-3.2-1B-shaped model (1.24B parameters, 2.5 GB in bf16) must generate quickly. Skipped unless
// LAYERSKIP_SLOW_TESTS is set, to keep the unit suite light on small machines.
TEST(ModelWeights, RandomLlama32OneBIsFast) {
  if (std::getenv("LAYERSKIP_SLOW_TESTS") == nullptr) GTEST_SKIP() << "set LAYERSKIP_SLOW_TESTS=1";
  LlamaConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.tie_word_embeddings = true;
  auto t0 = std::chrono::steady_clock::now();
  ModelWeights w = RandomModelWeights(c, WeightType::kBF16, 1);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(w.bytes(), size_t{1235746816} * 2 + (16 * 2 + 1) * 2048 * 4);  // 1.24B params
  std::printf("RandomModelWeights(Llama-3.2-1B, bf16): %.2f s\n", s);
  EXPECT_LT(s, 60.0);
}

}  // namespace
}  // namespace layerskip
