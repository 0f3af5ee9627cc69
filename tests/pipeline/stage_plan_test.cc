// Stage plans: explicit ranges and the automatic split.
#include "coordinator/execution/pipeline/stage_plan.h"

#include "gtest/gtest.h"

namespace layerskip::pipeline {
namespace {

TEST(StagePlan, ParsesExplicitRanges) {
  auto p = ParseStagePlan("0-3,4-11,12-15", 16);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].end_layer, 4);
  EXPECT_TRUE((*p)[0].embedding && (*p)[0].head);
  EXPECT_FALSE((*p)[1].embedding || (*p)[1].head);
  EXPECT_TRUE((*p)[2].head && !(*p)[2].embedding);
  EXPECT_EQ(StagePlanString(*p), "0-3,4-11,12-15");
}

TEST(StagePlan, RejectsBadRanges) {
  EXPECT_FALSE(ParseStagePlan("0-3,5-15", 16).ok());   // gap
  EXPECT_FALSE(ParseStagePlan("0-3,4-16", 16).ok());   // past the end
  EXPECT_FALSE(ParseStagePlan("0-3,4-10", 16).ok());   // not covering
  EXPECT_FALSE(ParseStagePlan("0-15", 16).ok());       // one stage
  EXPECT_FALSE(ParseStagePlan("0-3,x-15", 16).ok());
  EXPECT_FALSE(ParseStagePlan("3-0,1-15", 16).ok());
}

TEST(StagePlan, AutomaticBalancesTheVerifyLayers) {
  LlamaConfig c;
  c.num_hidden_layers = 16;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.vocab_size = 128256;
  auto p = AutoStagePlan(c, 3, 4);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].end_layer, 4);
  EXPECT_EQ((*p)[1].first_layer, 4);
  EXPECT_EQ((*p)[2].end_layer, 16);
  // The LM head costs several layers here, so the last stage gets fewer layers.
  EXPECT_GT((*p)[1].end_layer - (*p)[1].first_layer, (*p)[2].end_layer - (*p)[2].first_layer);
  EXPECT_FALSE(AutoStagePlan(c, 1, 4).ok());
  EXPECT_FALSE(AutoStagePlan(c, 14, 4).ok());  // 12 layers after E for 13 stages
}

}  // namespace
}  // namespace layerskip::pipeline
