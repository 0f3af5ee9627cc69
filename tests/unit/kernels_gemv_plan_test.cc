// The decode GEMV's host-side plan (kernels/gemv_plan.h): split-K fixed per weight shape whatever the token
// count, every row and K group covered exactly once, the token tile, and the CPU emulation of the kernel's
// arithmetic (which the GPU test compares bitwise) against a double-precision dot product.
#include "kernels/gemv_plan.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace layerskip::cuda {
namespace {

struct Shape {
  int64_t M, K;
  bool swiglu;
};

// The shapes of the Llama-3.2-1B / Llama-3-8B / demo layers (QKV and gate/up concatenated) and odd ones.
const Shape kShapes[] = {{3072, 2048, false}, {2048, 2048, false}, {16384, 2048, true}, {2048, 8192, false},
                         {128256, 2048, false}, {6144, 4096, false}, {4096, 4096, false}, {28672, 4096, true},
                         {4096, 14336, false}, {768, 256, false}, {1024, 256, true}, {256, 1024, false},
                         {1, 8, false}, {33, 40, false}, {512, 2048, false}, {7, 65536, false}};

TEST(GemvPlanTest, SplitIsFixedPerShapeWhateverTheTokenCount) {
  for (const Shape& s : kShapes) {
    const GemvPlan one = PlanGemv(s.M, s.K, 1, s.swiglu);
    ASSERT_TRUE(one.supported) << s.M << "x" << s.K;
    for (int64_t n = 1; n <= 300; ++n) {
      const GemvPlan p = PlanGemv(s.M, s.K, n, s.swiglu);
      EXPECT_EQ(p.split_k, one.split_k) << s.M << "x" << s.K << " n=" << n;
      EXPECT_EQ(p.segment_groups, one.segment_groups);
      EXPECT_EQ(p.split_k, GemvSplitK(s.M, s.K));
    }
  }
}

TEST(GemvPlanTest, EveryRowAndGroupIsCoveredOnce) {
  for (const Shape& s : kShapes) {
    for (int64_t n : {1, 5, 16, 40}) {
    const GemvPlan p = PlanGemv(s.M, s.K, n, s.swiglu);
    EXPECT_EQ(p.rows_per_warp, n >= 5 ? 4 : 2);
    EXPECT_TRUE(p.split_k == 1 || p.split_k == 2 || p.split_k == 4 || p.split_k == 8);
    EXPECT_EQ(p.row_slots * p.split_k, kGemvWarps);
    const int64_t groups = s.K / 8;
    // Segments [s*seg, (s+1)*seg) tile [0, groups) with none empty.
    EXPECT_GE(p.split_k * p.segment_groups, groups);
    EXPECT_LT((p.split_k - 1) * p.segment_groups, groups);
    // Row units: plain R rows each, SwiGLU R/2 (gate, up) pairs each.
    const int64_t outputs = s.swiglu ? s.M / 2 : s.M, per_unit = s.swiglu ? p.rows_per_warp / 2 : p.rows_per_warp;
    EXPECT_GE(p.units * per_unit, outputs);
    EXPECT_LT((p.units - 1) * per_unit, outputs);
    EXPECT_GE(p.grid_x * p.row_slots, p.units);
    EXPECT_LT((p.grid_x - 1) * p.row_slots, p.units);
    if (p.split_k > 1) {
      EXPECT_GE(p.segment_groups, 32 * kGemvMinGroupsPerLane);
    }
    }
  }
}

TEST(GemvPlanTest, SmallShapesSplitToFillTheDevice) {
  EXPECT_EQ(GemvSplitK(3072, 2048), 2);    // 1B QKV: 1536 row pairs
  EXPECT_EQ(GemvSplitK(2048, 8192), 2);    // 1B down
  EXPECT_EQ(GemvSplitK(512, 2048), 4);     // a lone 1B k projection: 256 pairs, stops at 2 groups per lane
  EXPECT_EQ(GemvSplitK(16384, 2048), 1);   // 1B gate/up
  EXPECT_EQ(GemvSplitK(128256, 2048), 1);  // LM head
  EXPECT_EQ(GemvSplitK(4096, 14336), 1);   // 8B down: 2048 pairs already
  EXPECT_EQ(GemvSplitK(768, 256), 1);      // too short to split
  EXPECT_EQ(GemvSplitK(7, 65536), 8);
}

TEST(GemvPlanTest, TokenTiles) {
  EXPECT_EQ(GemvTile(1), 1);
  EXPECT_EQ(GemvTile(2), 2);
  EXPECT_EQ(GemvTile(3), 4);
  EXPECT_EQ(GemvTile(9), 16);
  EXPECT_EQ(GemvTile(16), 16);
  EXPECT_EQ(GemvTile(17), 16);
  EXPECT_EQ(PlanGemv(64, 64, 17, false).grid_y, 2);
  EXPECT_EQ(PlanGemv(64, 64, 256, false).grid_y, 16);
  EXPECT_EQ(PlanGemv(64, 64, 0, false).grid_y, 0);
}

TEST(GemvPlanTest, UnsupportedShapesFallBack) {
  EXPECT_FALSE(PlanGemv(64, 100, 1, false).supported);  // K % 8 != 0: the old Matmul
  EXPECT_FALSE(PlanGemv(0, 64, 1, false).supported);
  EXPECT_FALSE(PlanGemv(63, 64, 1, true).supported);    // SwiGLU needs (gate, up) row pairs
}

TEST(GemvPlanTest, ReferenceIsADotProductAndBatchInvariant) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape& s : {Shape{33, 40, false}, Shape{512, 2048, false}, Shape{5, 4096, false}}) {
    const int64_t n = 3;
    std::vector<float> x(n * s.K), w(s.M * s.K), y(n * s.M);
    for (float& v : x) v = dist(gen);
    for (float& v : w) v = dist(gen);
    GemvReference(x.data(), n, w.data(), s.M, s.K, y.data());
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float> alone(s.M);
      GemvReference(x.data() + i * s.K, 1, w.data(), s.M, s.K, alone.data());
      for (int64_t j = 0; j < s.M; ++j) {
        double ref = 0;
        for (int64_t k = 0; k < s.K; ++k) ref += double(x[i * s.K + k]) * w[j * s.K + k];
        EXPECT_NEAR(y[i * s.M + j], ref, 1e-5 * s.K) << s.M << "x" << s.K;
        EXPECT_EQ(y[i * s.M + j], alone[j]);  // bitwise: a row alone or in a batch
      }
    }
  }
}

// kWide (issue 17, CudaModelOptions::gemv_plan): still fixed per shape whatever the token count, every row
// and group covered once, at least the default's split, and at least one group per lane when it splits.
TEST(GemvPlanTest, WidePlanIsFixedPerShapeAndCoversOnce) {
  for (const Shape& s : kShapes) {
    const GemvPlan one = PlanGemv(s.M, s.K, 1, s.swiglu, GemvPlanKind::kWide);
    ASSERT_TRUE(one.supported);
    EXPECT_TRUE(one.early_loads);
    EXPECT_FALSE(PlanGemv(s.M, s.K, 1, s.swiglu).early_loads);
    EXPECT_GE(one.split_k, GemvSplitK(s.M, s.K)) << s.M << "x" << s.K;
    EXPECT_EQ(one.split_k, GemvSplitK(s.M, s.K, GemvPlanKind::kWide));
    EXPECT_EQ(GemvSplitK(s.M, s.K, GemvPlanKind::kDefault), GemvSplitK(s.M, s.K));
    for (int64_t n = 1; n <= 64; ++n) {
      const GemvPlan p = PlanGemv(s.M, s.K, n, s.swiglu, GemvPlanKind::kWide);
      ASSERT_EQ(p.split_k, one.split_k) << s.M << "x" << s.K << " n=" << n;
      ASSERT_EQ(p.segment_groups, one.segment_groups);
      const int64_t groups = s.K / 8;
      EXPECT_GE(p.split_k * p.segment_groups, groups);
      EXPECT_LT((p.split_k - 1) * p.segment_groups, groups);
      EXPECT_EQ(p.row_slots * p.split_k, kGemvWarps);
      if (p.split_k > 1) {
        EXPECT_GE(p.segment_groups, 32 * kGemvWideMinGroupsPerLane);
      }
      EXPECT_GE(p.grid_x * p.row_slots, p.units);
      EXPECT_LE(p.grid_x, GemvArgmaxBlocks(s.M, s.K, GemvPlanKind::kWide));  // the argmax scratch bound
      EXPECT_LE(PlanGemv(s.M, s.K, n, s.swiglu).grid_x, GemvArgmaxBlocks(s.M, s.K));
    }
  }
}

// kWidePdl only changes how the GEMV is launched: the same split, segments and grid as kWide.
TEST(GemvPlanTest, WidePdlPlanIsTheWidePlan) {
  for (const Shape& s : kShapes)
    for (int64_t n : {1, 3, 16, 40}) {
      const GemvPlan a = PlanGemv(s.M, s.K, n, s.swiglu, GemvPlanKind::kWide);
      const GemvPlan b = PlanGemv(s.M, s.K, n, s.swiglu, GemvPlanKind::kWidePdl);
      EXPECT_EQ(a.split_k, b.split_k);
      EXPECT_EQ(a.segment_groups, b.segment_groups);
      EXPECT_EQ(a.grid_x, b.grid_x);
      EXPECT_EQ(a.grid_y, b.grid_y);
      EXPECT_TRUE(b.early_loads && b.pdl && !a.pdl);
      EXPECT_EQ(GemvArgmaxBlocks(s.M, s.K, GemvPlanKind::kWide), GemvArgmaxBlocks(s.M, s.K, GemvPlanKind::kWidePdl));
    }
}

TEST(GemvPlanTest, WidePlanSplitsTheSmallProjectionsFurther) {
  EXPECT_EQ(GemvSplitK(3072, 2048, GemvPlanKind::kWide), 8);    // 1B QKV: 12288 warps (default 2: 3072)
  EXPECT_EQ(GemvSplitK(2048, 2048, GemvPlanKind::kWide), 8);    // 1B o: 8192 warps (default 2)
  EXPECT_EQ(GemvSplitK(6144, 4096, GemvPlanKind::kWide), 4);    // 8B QKV: 12288 warps (default 1)
  EXPECT_EQ(GemvSplitK(4096, 4096, GemvPlanKind::kWide), 4);    // 8B o (default 1)
  EXPECT_EQ(GemvSplitK(16384, 2048, GemvPlanKind::kWide), 1);   // 1B gate/up: 8192 pairs already
  EXPECT_EQ(GemvSplitK(128256, 2048, GemvPlanKind::kWide), 1);  // LM head
  EXPECT_EQ(GemvSplitK(768, 256, GemvPlanKind::kWide), 1);      // 32 groups: one per lane, no split
}

// The wide plan's emulation is a dot product, batch-invariant, and (where the split differs) a different
// but fixed order: it is the arithmetic the GPU test compares GemvPlanned(kWide) with bitwise.
TEST(GemvPlanTest, WideReferenceIsADotProductAndBatchInvariant) {
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape& s : {Shape{33, 40, false}, Shape{64, 2048, false}, Shape{5, 4096, false}}) {
    const int64_t n = 3;
    std::vector<float> x(n * s.K), w(s.M * s.K), y(n * s.M), alone(s.M);
    for (float& v : x) v = dist(gen);
    for (float& v : w) v = dist(gen);
    GemvReference(x.data(), n, w.data(), s.M, s.K, y.data(), GemvPlanKind::kWide);
    for (int64_t i = 0; i < n; ++i) {
      GemvReference(x.data() + i * s.K, 1, w.data(), s.M, s.K, alone.data(), GemvPlanKind::kWide);
      for (int64_t j = 0; j < s.M; ++j) {
        double ref = 0;
        for (int64_t k = 0; k < s.K; ++k) ref += double(x[i * s.K + k]) * w[j * s.K + k];
        EXPECT_NEAR(y[i * s.M + j], ref, 1e-5 * s.K);
        EXPECT_EQ(y[i * s.M + j], alone[j]);
      }
    }
  }
}

// ArgmaxBetter (the comparison GemvArgmax's kernels reduce with) picks kernels Argmax's answer whatever order
// the candidates are folded in: the first index of the largest value, -inf chosen over nothing, NaN never.
TEST(GemvPlanTest, ArgmaxRuleIsOrderFreeAndTakesTheFirstIndex) {
  const float inf = INFINITY, nan = NAN;
  const std::vector<std::vector<float>> rows = {
      {1, 3, 3, 2}, {-inf, -inf}, {nan, 2, nan, 2}, {nan, nan}, {0.0f, -0.0f, 0.0f}, {5}, {-1, inf, inf, 7}};
  const std::vector<int> want = {1, 0, 1, 0, 0, 0, 1};
  std::mt19937 gen(3);
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::vector<float>& v = rows[r];
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<int64_t> order(v.size());
      for (size_t i = 0; i < v.size(); ++i) order[i] = static_cast<int64_t>(i);
      std::shuffle(order.begin(), order.end(), gen);
      float bv = -inf;
      int64_t bi = static_cast<int64_t>(v.size());  // "none yet", as the kernels start
      for (int64_t i : order)
        if (ArgmaxBetter(v[i], i, bv, bi)) bv = v[i], bi = i;
      EXPECT_EQ(bi < static_cast<int64_t>(v.size()) ? bi : 0, want[r]) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace layerskip::cuda
