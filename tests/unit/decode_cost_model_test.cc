// The cost model's arithmetic, the automatic (E, d) policy's choices for known costs and acceptance,
// calibration on a real model, and the calibration cache.
#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "engine/decode/cost_calibration.h"
#include "engine/decode/cost_model.h"
#include "engine/decode/cost_model_cache.h"
#include "engine/decode/speculation_policy.h"
#include "gtest/gtest.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

// A cost model where a layer pass over n rows costs layer(n) and the heads cost `head` per pass.
CostModel Synthetic(int L, double (*layer)(int), double head, double prior) {
  CostModel c;
  c.num_layers = L;
  for (int n = 1; n <= CostModel::kMaxRows; ++n) {
    c.layer_seconds.push_back(layer(n));
    c.head_seconds.push_back(head);
    c.draft_head_seconds.push_back(head);
  }
  c.prior_acceptance.assign(L + 1, prior);
  return c;
}
double Flat(int) { return 1.0; }                  // memory-bound: n rows cost one
double Linear(int n) { return n; }                // compute-bound: n rows cost n
double Mild(int n) { return 1.0 + 0.25 * (n - 1); }

TEST(CostModelTest, RoundAndSpeedupFormulas) {
  const CostModel c = Synthetic(12, Flat, 0.0, 1.0);
  EXPECT_DOUBLE_EQ(c.AutoregressiveStep(1), 12.0);
  // (d+1) E + (L - E) layer passes when rows are free.
  EXPECT_DOUBLE_EQ(c.Round(8, 4, 1), 5 * 8 + 4);
  EXPECT_DOUBLE_EQ(c.Round(8, 0, 1), 12.0);
  const std::vector<double> reach(4, 1.0);
  EXPECT_DOUBLE_EQ(ExpectedTokens(reach, 4), 5.0);
  EXPECT_DOUBLE_EQ(ExpectedTokens({0.5, 0.25}, 2), 1.75);
  // docs/self-speculative.md's ceiling: tokens x L / ((d+1) E + L - E).
  EXPECT_DOUBLE_EQ(PredictedSpeedup(c, 8, 4, 1, reach), 5.0 * 12 / 44);
  const CostModel lin = Synthetic(12, Linear, 0.0, 1.0);
  EXPECT_DOUBLE_EQ(lin.Round(6, 2, 2), 3 * 6 * 2 + 6 * 6);  // verify rows = batch x (d+1)
  EXPECT_DOUBLE_EQ(lin.Layer(20), 20.0);                      // past 16 rows: the measured slope continues
  EXPECT_FALSE(c.Valid());  // a head that costs nothing is not a measurement
  EXPECT_TRUE(Synthetic(12, Flat, 0.1, 1.0).Valid());
}

TEST(PolicyTest, SpeculatesWhenRowsAreCheapAndAcceptanceHigh) {
  SpeculationPolicy p(Synthetic(16, Flat, 0.1, 1.0), PolicyOptions{});
  const SpeculationChoice c = p.Choose(1);
  EXPECT_EQ(c.exit_layer, 1);  // every exit agrees: the cheapest draft wins
  EXPECT_EQ(c.speculations, 8);
  EXPECT_GT(c.predicted_speedup, 1.0);
}

TEST(PolicyTest, AutoregressiveWhenSpeculationCannotPay) {
  SpeculationPolicy compute_bound(Synthetic(12, Linear, 0.1, 0.9), PolicyOptions{});
  EXPECT_EQ(compute_bound.Choose(1).speculations, 0);
  SpeculationPolicy never_accepted(Synthetic(12, Flat, 0.1, 0.0), PolicyOptions{});
  EXPECT_EQ(never_accepted.Choose(1).speculations, 0);
}

TEST(PolicyTest, LargerBatchesDraftLess) {
  PolicyOptions o;
  o.exit_layer = 6;
  SpeculationPolicy p(Synthetic(12, Mild, 0.1, 0.8), o);
  const int d1 = p.Choose(1).speculations, d4 = p.Choose(4).speculations, d16 = p.Choose(16).speculations;
  EXPECT_GT(d1, 0);
  EXPECT_GE(d1, d4);
  EXPECT_GE(d4, d16);
  EXPECT_LT(d16, d1);
}

TEST(PolicyTest, ObservedRejectionsMoveTheChoice) {
  PolicyOptions o;
  o.probe_interval = 1 << 20;
  o.decay = 1.0;
  SpeculationPolicy p(Synthetic(12, Flat, 0.1, 0.9), o);
  const SpeculationChoice first = p.Choose(1);
  ASSERT_GT(first.speculations, 0);
  const double before = p.Reach(first.exit_layer, 1)[0];
  for (int r = 0; r < 50; ++r) p.Observe(first.exit_layer, first.speculations, 0);
  EXPECT_LT(p.Reach(first.exit_layer, 1)[0], before / 4);
  const SpeculationChoice next = p.Choose(1);
  EXPECT_NE(next.exit_layer, first.exit_layer);  // other exits keep their prior
  for (int e = 1; e < 12; ++e)
    for (int r = 0; r < 50; ++r) p.Observe(e, 4, 0);
  EXPECT_EQ(p.Choose(1).speculations, 0);  // nothing pays any more: autoregressive
}

// The machine got slower for multi-row passes after calibration (another process's load): measured rounds
// 10x the prediction turn speculation off; autoregressive steps measured slower too bring it back.
TEST(PolicyTest, MeasuredStepTimesScaleThePrediction) {
  PolicyOptions o;
  o.exit_layer = 6;
  o.probe_interval = 1 << 20;
  SpeculationPolicy p(Synthetic(12, Flat, 0.1, 0.9), o);
  const SpeculationChoice c = p.Choose(1);
  ASSERT_GT(c.speculations, 0);
  const double round = p.cost().Round(6, c.speculations, 1);
  for (int i = 0; i < 12; ++i) p.ObserveTime(6, c.speculations, 1, 10 * round);
  EXPECT_GT(p.speculative_scale(), 5.0);
  EXPECT_EQ(p.Choose(1).speculations, 0);
  for (int i = 0; i < 12; ++i) p.ObserveTime(6, 0, 1, 10 * p.cost().AutoregressiveStep(1));
  EXPECT_GT(p.Choose(1).speculations, 0);
}

// The service shares one policy between batches: a batch's own fixed E or d restricts that Choose only.
TEST(PolicyTest, PerCallExitLayerAndDraftLength) {
  SpeculationPolicy p(Synthetic(16, Flat, 0.1, 1.0), PolicyOptions{});
  const SpeculationChoice fixed_d = p.Choose(1, 0, 3);
  EXPECT_EQ(fixed_d.exit_layer, 1);
  EXPECT_EQ(fixed_d.speculations, 3);
  const SpeculationChoice fixed_e = p.Choose(1, 5, 0);
  EXPECT_EQ(fixed_e.exit_layer, 5);
  EXPECT_EQ(fixed_e.speculations, 8);
  const SpeculationChoice both = p.Choose(1, 7, 2);
  EXPECT_EQ(both.exit_layer, 7);
  EXPECT_EQ(both.speculations, 2);
  EXPECT_EQ(p.Choose(1).speculations, 8);  // unrestricted again
}

TEST(PolicyTest, ProbesAfterALongAutoregressiveStretch) {
  PolicyOptions o;
  o.probe_interval = 3;
  o.probe_floor = 0.0;
  SpeculationPolicy p(Synthetic(12, Flat, 0.1, 0.0), o);
  int probes = 0;
  for (int i = 0; i < 12; ++i) probes += p.Choose(1).probe;
  EXPECT_EQ(probes, 3);
}

TEST(CostModelCacheTest, JsonRoundTripAndKeyMismatch) {
  const CostModel c = Synthetic(4, Mild, 0.5, 0.7);
  auto back = CostModelFromJson(CostModelToJson(c, "k1"), "k1");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->layer_seconds, c.layer_seconds);
  EXPECT_EQ(back->prior_acceptance, c.prior_acceptance);
  EXPECT_TRUE(absl::IsNotFound(CostModelFromJson(CostModelToJson(c, "k1"), "k2").status()));
  EXPECT_FALSE(CostModelFromJson("{\"key\": \"k1\", \"num_layers\": 4}", "k1").ok());
  EXPECT_FALSE(CostModelFromJson("not json", "k1").ok());
}

TEST(CalibrationTest, MeasuresAValidModelAndCachesIt) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("ls_cost_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ASSERT_EQ(setenv("LAYERSKIP_CACHE_DIR", dir.c_str(), 1), 0);
  const LlamaConfig cfg = testing::SmallConfig(6);
  auto m = testing::RandomModel(cfg, WeightType::kBF16, 3, 8.0f, 2, 0.0f);  // layers >= 2 write nothing
  CostModelRequest r;
  r.model_id = "test small";
  r.probe_tokens = DefaultProbeTokens(nullptr, cfg.vocab_size);
  r.budget_seconds = 0.3;
  auto first = ObtainCostModel(*m->model, r);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->Valid());
  EXPECT_EQ(first->source, "measured");
  // Exits after layer 1 or later are the full model: the prior says every draft is accepted there.
  for (int e = 2; e < 6; ++e) EXPECT_EQ(first->prior_acceptance[e], 1.0) << e;
  auto second = ObtainCostModel(*m->model, r);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->source.rfind("cached ", 0), 0u) << second->source;
  EXPECT_EQ(second->layer_seconds, first->layer_seconds);
  r.calibration = Calibration::kOff;
  auto off = ObtainCostModel(*m->model, r);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->source, "default");
  EXPECT_TRUE(off->Valid());
  EXPECT_FALSE(ParseCalibration("sometimes").ok());
  std::filesystem::remove_all(dir);
  unsetenv("LAYERSKIP_CACHE_DIR");
}

}  // namespace
}  // namespace layerskip
