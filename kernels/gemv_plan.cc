#include "kernels/gemv_plan.h"

#include <algorithm>
#include <cmath>

namespace layerskip::cuda {

int GemvSplitK(int64_t M, int64_t K) { return GemvSplitK(M, K, GemvPlanKind::kDefault); }

int GemvSplitK(int64_t M, int64_t K, GemvPlanKind kind) {
  if (M <= 0 || K <= 0 || K % 8 != 0) return 1;
  const bool wide = kind != GemvPlanKind::kDefault;
  const int64_t target = wide ? kGemvWideTargetWarps : kGemvTargetWarps;
  const int64_t min_groups = wide ? kGemvWideMinGroupsPerLane : kGemvMinGroupsPerLane;
  const int64_t groups = K / 8, units = (M + 1) / 2;
  int split = 1;
  while (split < kGemvMaxSplit && units * split < target && groups / (2 * split) >= 32 * min_groups) split *= 2;
  return split;
}

int GemvTile(int64_t n) {
  int tile = 1;
  while (tile < n && tile < kGemvMaxTile) tile *= 2;
  return tile;
}

GemvPlan PlanGemv(int64_t M, int64_t K, int64_t n, bool swiglu, GemvPlanKind kind) {
  GemvPlan p;
  p.supported = M > 0 && K > 0 && K % 8 == 0 && (!swiglu || M % 2 == 0);
  if (!p.supported) return p;
  p.split_k = GemvSplitK(M, K, kind);
  p.early_loads = kind != GemvPlanKind::kDefault;
  p.pdl = kind == GemvPlanKind::kWidePdl;
  const int64_t groups = K / 8;
  p.segment_groups = (groups + p.split_k - 1) / p.split_k;
  p.row_slots = kGemvWarps / p.split_k;
  p.tile = GemvTile(n);
  p.rows_per_warp = p.tile >= 8 ? 4 : 2;
  const int64_t per_unit = swiglu ? p.rows_per_warp / 2 : p.rows_per_warp;
  const int64_t outputs = swiglu ? M / 2 : M;
  p.units = (outputs + per_unit - 1) / per_unit;
  p.grid_x = (p.units + p.row_slots - 1) / p.row_slots;
  p.grid_y = n > 0 ? (n + p.tile - 1) / p.tile : 0;
  return p;
}

void GemvReference(const float* x, int64_t n, const float* w, int64_t M, int64_t K, float* y, GemvPlanKind kind) {
  const int split = GemvSplitK(M, K, kind);
  const int64_t groups = K / 8, seg = (groups + split - 1) / split;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < M; ++j) {
      float total = 0.0f;
      for (int s = 0; s < split; ++s) {
        const int64_t begin = s * seg, end = std::min(groups, begin + seg);
        float lanes[32];
        for (int l = 0; l < 32; ++l) {
          float acc = 0.0f;
          for (int64_t g = begin + l; g < end; g += 32)
            for (int e = 0; e < 8; ++e) acc = std::fmaf(w[j * K + g * 8 + e], x[i * K + g * 8 + e], acc);
          lanes[l] = acc;
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
          float next[32];
          for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ offset];
          std::copy(next, next + 32, lanes);
        }
        total = s == 0 ? lanes[0] : total + lanes[0];
      }
      y[i * M + j] = total;
    }
}

int64_t GemvArgmaxBlocks(int64_t M, int64_t K, GemvPlanKind kind) {
  const GemvPlan p = PlanGemv(M, K, 1, false, kind);
  return p.supported ? p.grid_x : 0;
}

}  // namespace layerskip::cuda
