#pragma once
// Host-side planning of the decode GEMV (kernels/gemv_cuda.cu): how a weight of shape [M, K] is cut between
// warps and blocks, as plain functions so the CPU build can test them (tests/unit/kernels_gemv_plan_test.cc).
//
// Batch invariance: split_k and the segment length come from (M, K) ONLY, never from the number of tokens
// or the device, so the arithmetic of y[i, j] is one fixed sequence per weight shape. The token count only
// picks the token tile (how many tokens share each weight load) and grid.y.
#include <cstdint>
#include <vector>

#ifdef __CUDACC__
#define LS_GEMV_HOST_DEVICE __host__ __device__
#else
#define LS_GEMV_HOST_DEVICE
#endif

namespace layerskip::cuda {

constexpr int kGemvWarps = 8;        // warps per block (256 threads)
// Weight rows per warp: 2 for tiles of up to 4 tokens, 4 for 8 and 16 (each x load then serves 4 rows, which
// keeps the L1 traffic of a 16-token tile under the weights' HBM rate). SwiGLU: R/2 (gate, up) row pairs.
// Which warp computes a row never changes its arithmetic.
constexpr int kGemvMaxRowsPerWarp = 4;
constexpr int kGemvMaxTile = 16;     // the largest token tile; more tokens run as several tiles (grid.y)
constexpr int kGemvMaxSplit = 8;
// The split-K grows until a weight gives at least this many warps (about 16 per SM on a 132-SM H200; a
// fixed constant, not the device's SM count, so results do not depend on the device model).
constexpr int64_t kGemvTargetWarps = 2048;
// A segment keeps at least this many 8-element groups per lane (enough independent 16-byte loads per lane).
constexpr int64_t kGemvMinGroupsPerLane = 2;

// Which split-K rule a model uses (CudaModelOptions::gemv_plan; fixed for the life of the model, so y[i, j]
// is still one fixed sequence per weight shape). kDefault is the rule above (verified on an H200). kWide
// (issue 17, not yet run on a GPU) puts more warps and bytes in flight for the small projections (q/k/v,
// o): the split grows until ceil(M/2) * S >= kGemvWideTargetWarps (about 62 warps per SM: nearly every warp
// slot of a 132-SM H200) while a segment keeps >= kGemvWideMinGroupsPerLane group per lane, and the kernel
// issues the first round of weight loads before a folded RMSNorm's prologue (same arithmetic, less latency).
//
// kWidePdl is kWide launched with programmatic dependent launch (Hopper): each block lets the next kernel
// start at once, and waits (griddepcontrol.wait) for the previous kernel's completion after issuing its
// first weight loads and before touching anything but weights, so a GEMV streams its weights while the
// kernel before it finishes. The same split and arithmetic as kWide (bitwise).
enum class GemvPlanKind { kDefault, kWide, kWidePdl };
constexpr int64_t kGemvWideTargetWarps = 8192;
constexpr int64_t kGemvWideMinGroupsPerLane = 1;

struct GemvPlan {
  bool supported = false;   // K % 8 == 0 and the shape is non-empty (else the caller uses the old Matmul)
  int split_k = 1;          // K segments per output row: 1, 2, 4 or 8; summed in segment order
  int64_t segment_groups = 0;  // 8-element groups per segment (the last segment may be shorter)
  int row_slots = 0;        // kGemvWarps / split_k warps-worth of rows per block
  int tile = 0;             // tokens per block (1, 2, 4, 8 or 16)
  int rows_per_warp = 0;    // R: 2 or 4 (from the tile)
  int64_t units = 0;        // warp units: ceil(M / R) (SwiGLU: ceil((M/2) / (R/2)) column groups)
  int64_t grid_x = 0;       // ceil(units / row_slots)
  int64_t grid_y = 0;       // ceil(n / tile)
  bool early_loads = false; // kWide: the first round of weight loads before the folded-norm prologue
  bool pdl = false;         // kWidePdl: programmatic dependent launch (weights before the wait)
};

// The split-K of a [M, K] weight (K % 8 == 0): the smallest power of two S <= 8 with ceil(M/2) * S >=
// kGemvTargetWarps, stopping early when a segment would hold fewer than kGemvMinGroupsPerLane groups per lane.
int GemvSplitK(int64_t M, int64_t K);
// The same under a chosen rule (kDefault: GemvSplitK(M, K)).
int GemvSplitK(int64_t M, int64_t K, GemvPlanKind kind);

// The token tile for n tokens: the smallest power of two >= n, at most kGemvMaxTile.
int GemvTile(int64_t n);

// The whole launch plan of y[n, M] = x[n, K] W^T (swiglu: M = 2F rows, F output columns).
GemvPlan PlanGemv(int64_t M, int64_t K, int64_t n, bool swiglu, GemvPlanKind kind = GemvPlanKind::kDefault);

// The exact arithmetic of the GPU kernel on the CPU (the GPU tests compare bitwise): y[n, M] = x[n, K] W^T
// with w the weights as f32 (bf16 widened exactly). Per (token i, row j): segment s of split_k covers
// groups [s*seg, min((s+1)*seg, K/8)); lane l (0..31) runs acc = fmaf(w, x, acc) from 0 over the groups
// l, l+32, ... of its segment in order, elements 0..7 of a group in order; the 32 lane sums are added by the
// butterfly (offsets 16, 8, 4, 2, 1); the segment sums are added in segment order.
void GemvReference(const float* x, int64_t n, const float* w, int64_t M, int64_t K, float* y,
                   GemvPlanKind kind = GemvPlanKind::kDefault);

// The fused LM-head argmax (GemvArgmax, issue 17): the number of per-block (max, index) candidates one token
// produces, the largest over every tile (R = 2 rows per warp gives the most blocks): PlanGemv(M, K, 1).grid_x.
int64_t GemvArgmaxBlocks(int64_t M, int64_t K, GemvPlanKind kind = GemvPlanKind::kDefault);

// The argmax rule of kernels Argmax (first index on ties, NaN never chosen; all NaN or empty: 0), as the
// order-free comparison GemvArgmax reduces with: is (v2, i2) a better candidate than (v1, i1)?
// (Plain C++ here; also compiled for the device, where GemvArgmax's kernels call it.)
LS_GEMV_HOST_DEVICE inline bool ArgmaxBetter(float v2, int64_t i2, float v1, int64_t i1) {
  return v2 > v1 || (v2 == v1 && i2 < i1);
}

}  // namespace layerskip::cuda
