// Issue 17's kernels that are written but not yet the default (part of the cuda_ops_test binary; docs/cuda.md,
// "Issue 17: prepared, not yet run"): the wide GEMV plan bitwise its CPU emulation and batch-invariant (its
// early loads with the folded norm bitwise RmsNorm + GEMV); the LM-head argmax epilogue (GemvArgmax) equal to
// Argmax(Gemv) on every row, ties and NaN included, alone or in a batch; the one-kernel decode attention
// bitwise the two-kernel one, alone or in a batch, call after call. Skipped without a GPU.
#include <cmath>
#include <string>
#include <vector>

#include "engine/util/bf16.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/device_weight.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/gemv_plan.h"
#include "kernels/sampling.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/gpu/gemv_test_util.h"

namespace layerskip::cuda {
namespace {

using ::layerskip::cuda::testing::Bitwise;
using ::layerskip::cuda::testing::DeviceMatrix;
using ::layerskip::cuda::testing::Down;
using ::layerskip::cuda::testing::HostWeight;
using ::layerskip::cuda::testing::RandomVector;
using ::layerskip::cuda::testing::RandomWeight;
using ::layerskip::cuda::testing::Up;
using ::layerskip::cuda::testing::UpWeight;
using ::layerskip::cuda::testing::Zeros;

class CudaNewKernelsGemvTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// The wide plan: bitwise GemvReference(kWide) (1B QKV and o shapes, 8B o, odd ones), and a row alone
// bitwise the same row in batches of 2..16 and 17 and 40, at every offset.
TEST_P(CudaNewKernelsGemvTest, WidePlanIsItsEmulationAndBatchInvariant) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{3072, 2048}, {2048, 2048}, {4096, 4096}, {300, 2056}, {33, 40}}) {
    const HostWeight w = RandomWeight(GetParam(), M, K, M + K);
    DeviceMatrix wd = UpWeight(*w.m);
    const int64_t N = 40;
    const std::vector<float> x = RandomVector(N * K, 5 + K);
    auto xd = Up(x);
    std::vector<float> emu(M);
    std::vector<std::vector<float>> alone(N);
    for (int64_t i = 0; i < N; ++i) {
      auto yd = Zeros<float>(M);
      ASSERT_EQ(GemvPlanned(xd.get() + i * K, 1, wd.view, GemvEpilogue::kStore, yd.get(), nullptr, GemvPlanKind::kWide),
                cudaSuccess);
      alone[i] = Down(yd);
      if (i < 3) {
        GemvReference(x.data() + i * K, 1, w.f32.data(), M, K, emu.data(), GemvPlanKind::kWide);
        ASSERT_TRUE(Bitwise(emu, alone[i].data())) << M << "x" << K << " split " << GemvSplitK(M, K, GemvPlanKind::kWide);
      }
    }
    for (int64_t n = 2; n <= N; n += (n < 17 ? 1 : 23)) {
      auto yd = Zeros<float>(n * M);
      const int64_t begin = (n * 5) % (N - n + 1);
      ASSERT_EQ(GemvPlanned(xd.get() + begin * K, n, wd.view, GemvEpilogue::kStore, yd.get(), nullptr,
                            GemvPlanKind::kWide),
                cudaSuccess);
      const std::vector<float> y = Down(yd);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(Bitwise(alone[begin + i], y.data() + i * M)) << M << "x" << K << ": row " << i << " of " << n;
    }
  }
}

// The wide plan's early loads (only with a folded norm) change when loads happen, not the arithmetic:
// folded == RmsNorm then GemvPlanned(kWide), every epilogue.
TEST_P(CudaNewKernelsGemvTest, WidePlanFoldedNormEqualsRmsNormThenGemv) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{3072, 2048}, {16384, 2048}, {96, 64}, {6144, 4096}}) {
    const HostWeight w = RandomWeight(GetParam(), M, K, 3 * M + K);
    DeviceMatrix wd = UpWeight(*w.m);
    auto nd = Up(RandomVector(K, K, 0.5f));
    for (int64_t n : {1, 2, 5, 16}) {
      auto xd = Up(RandomVector(n * K, n + 13, 3.0f));
      auto hd = Zeros<float>(n * K);
      ASSERT_EQ(RmsNorm(xd.get(), nd.get(), hd.get(), n, K, 1e-5f, nullptr), cudaSuccess);
      for (GemvEpilogue ep : {GemvEpilogue::kStore, GemvEpilogue::kAdd, GemvEpilogue::kSwiGlu}) {
        const int64_t out = ep == GemvEpilogue::kSwiGlu ? n * M / 2 : n * M;
        const std::vector<float> y0 = RandomVector(out, n + 5);
        auto a = Up(y0), b = Up(y0);
        ASSERT_EQ(GemvPlanned(xd.get(), n, wd.view, ep, a.get(), nullptr, GemvPlanKind::kWide, nd.get(), 1e-5f),
                  cudaSuccess);
        ASSERT_EQ(GemvPlanned(hd.get(), n, wd.view, ep, b.get(), nullptr, GemvPlanKind::kWide), cudaSuccess);
        ASSERT_TRUE(Bitwise(Down(a), Down(b).data())) << M << "x" << K << " n=" << n << " ep " << static_cast<int>(ep);
      }
    }
  }
}

// kWidePdl (programmatic dependent launch) on a chain of dependent GEMVs enqueued back to back on one
// stream, as a layer runs them (folded norm, residual add into the input of the next, SwiGLU, LM-head argmax):
// bitwise the same chain under kWide, whose launches serialise fully. A GEMV that read x or wrote y before
// its predecessor finished would differ.
TEST_P(CudaNewKernelsGemvTest, ProgrammaticLaunchChainEqualsSerialChain) {
  const int64_t D = 2048, F = 4096, n = 2;
  const HostWeight wqkv = RandomWeight(GetParam(), 3072, D, 1), wo = RandomWeight(GetParam(), D, D, 2);
  const HostWeight wup = RandomWeight(GetParam(), 2 * F, D, 3), wdown = RandomWeight(GetParam(), D, F, 4);
  const HostWeight head = RandomWeight(GetParam(), 16000, D, 5);
  DeviceMatrix qkv_d = UpWeight(*wqkv.m), o_d = UpWeight(*wo.m), up_d = UpWeight(*wup.m), down_d = UpWeight(*wdown.m);
  DeviceMatrix head_d = UpWeight(*head.m);
  auto norm = Up(RandomVector(D, 6, 0.5f));
  const std::vector<float> x0 = RandomVector(n * D, 7);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto run = [&](GemvPlanKind kind, std::vector<float>* x_out, std::vector<int>* ids_out) {
    auto x = Up(x0);
    auto qkv = Zeros<float>(n * 3072), gate = Zeros<float>(n * F);
    auto ids = Zeros<int>(n);
    auto scratch = Zeros<float>(GemvArgmaxScratchFloats(16000, D, n, kind));
    for (int layer = 0; layer < 4; ++layer) {  // x += o(qkv[:, :D]); x += down(swiglu(up(norm(x))))
      ASSERT_EQ(GemvPlanned(x.get(), n, qkv_d.view, GemvEpilogue::kStore, qkv.get(), stream, kind, norm.get(), 1e-5f),
                cudaSuccess);
      for (int64_t i = 0; i < n; ++i)  // o reads the first D columns of each qkv row: a strided view
        ASSERT_EQ(GemvPlanned(qkv.get() + i * 3072, 1, o_d.view, GemvEpilogue::kAdd, x.get() + i * D, stream, kind),
                  cudaSuccess);
      ASSERT_EQ(GemvPlanned(x.get(), n, up_d.view, GemvEpilogue::kSwiGlu, gate.get(), stream, kind, norm.get(), 1e-5f),
                cudaSuccess);
      ASSERT_EQ(GemvPlanned(gate.get(), n, down_d.view, GemvEpilogue::kAdd, x.get(), stream, kind), cudaSuccess);
    }
    ASSERT_EQ(GemvArgmax(x.get(), n, head_d.view, scratch.get(), ids.get(), stream, kind), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    *x_out = Down(x);
    *ids_out = Down(ids);
  };
  std::vector<float> xa, xb;
  std::vector<int> ia, ib;
  run(GemvPlanKind::kWide, &xa, &ia);
  for (int rep = 0; rep < 3; ++rep) {
    run(GemvPlanKind::kWidePdl, &xb, &ib);
    ASSERT_TRUE(Bitwise(xa, xb.data())) << "repetition " << rep;
    EXPECT_EQ(ia, ib);
  }
  cudaStreamDestroy(stream);
}

// GemvArgmax == Argmax(Gemv) on every row, both plans: random weights (no ties), then weights where rows
// {5, 6, 700, M-1} are one identical large row (exact ties at the maximum: the first index, 5, must win,
// across warps and blocks) and row 3 is NaN (never chosen), then all-zero weights (every logit ties: 0).
TEST_P(CudaNewKernelsGemvTest, ArgmaxInTheHeadEqualsArgmaxOfTheLogits) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{4096, 256}, {16000, 2048}, {2000, 4096}, {33, 40}}) {
    for (int variant = 0; variant < 3; ++variant) {
      HostWeight w = RandomWeight(GetParam(), M, K, M + variant);
      const bool bf16 = GetParam() == WeightType::kBF16;
      auto set = [&](int64_t j, int64_t k, float v) {
        if (bf16) static_cast<uint16_t*>(w.m->data())[j * K + k] = F32ToBf16(v);
        else static_cast<float*>(w.m->data())[j * K + k] = v;
      };
      if (variant == 1 && M > 700) {
        for (int64_t j : {int64_t{5}, int64_t{6}, int64_t{700}, M - 1})
          for (int64_t k = 0; k < K; ++k) set(j, k, 0.5f);
        for (int64_t k = 0; k < K; ++k) set(3, k, NAN);
      }
      if (variant == 2)
        for (int64_t j = 0; j < M; ++j)
          for (int64_t k = 0; k < K; ++k) set(j, k, 0.0f);
      DeviceMatrix wd = UpWeight(*w.m);
      for (GemvPlanKind kind : {GemvPlanKind::kDefault, GemvPlanKind::kWide}) {
        for (int64_t n : {1, 2, 3, 8, 16, 17, 40}) {
          std::vector<float> x = RandomVector(n * K, n + M);
          if (variant == 1)
            for (float& v : x) v = std::fabs(v) + 0.25f;  // the identical rows' logit is the largest
          auto xd = Up(x);
          auto logits = Zeros<float>(n * M);
          auto want = Zeros<int>(n), got = Zeros<int>(n);
          auto scratch = Zeros<float>(GemvArgmaxScratchFloats(M, K, n, kind));
          ASSERT_EQ(GemvPlanned(xd.get(), n, wd.view, GemvEpilogue::kStore, logits.get(), nullptr, kind), cudaSuccess);
          ASSERT_EQ(Argmax(logits.get(), n, M, want.get(), nullptr), cudaSuccess);
          ASSERT_EQ(GemvArgmax(xd.get(), n, wd.view, scratch.get(), got.get(), nullptr, kind), cudaSuccess);
          const std::vector<int> w_ids = Down(want), g_ids = Down(got);
          EXPECT_EQ(g_ids, w_ids) << M << "x" << K << " variant " << variant << " n=" << n;
          if (variant == 1 && M > 700) {
            for (int id : g_ids) EXPECT_EQ(id, 5) << "ties resolve to the first index";
          }
          if (variant == 2) {
            for (int id : g_ids) EXPECT_EQ(id, 0);
          }
          // A row alone gives the id it gets in the batch.
          auto one = Zeros<int>(1);
          for (int64_t i : {int64_t{0}, n - 1}) {
            ASSERT_EQ(GemvArgmax(xd.get() + i * K, 1, wd.view, scratch.get(), one.get(), nullptr, kind), cudaSuccess);
            EXPECT_EQ(Down(one)[0], g_ids[i]) << "row " << i << " of " << n;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaNewKernelsGemvTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

class CudaNewKernelsAttentionTest : public ::testing::TestWithParam<DType> {  // the KV cache's type
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// AttentionDecodeFused is bitwise AttentionDecode for positions inside the first chunk, on chunk edges and
// several chunks deep, GQA groups of 4 and 8, head_dim 64 and 128; a token alone equals the token in the
// batch; a second call (counters reset by the first) gives the same bits.
TEST_P(CudaNewKernelsAttentionTest, OneKernelEqualsSplitKPlusFold) {
  struct Shape {
    int heads, kvh, hd;
  };
  for (const Shape& sh : {Shape{8, 2, 64}, Shape{32, 8, 64}, Shape{32, 4, 128}}) {
    const int capacity = 320, slots_n = 3, kv_dim = sh.kvh * sh.hd;
    const std::vector<int> positions = {0, 1, 31, 63, 64, 65, 127, 128, 200, 255, 256, 319, 5, 64};
    const std::vector<int> slots = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 0};
    const int n = static_cast<int>(positions.size());
    const bool bf16 = GetParam() == DType::kBF16;
    const size_t cache_elems = static_cast<size_t>(slots_n) * capacity * kv_dim;
    std::vector<float> kf = RandomVector(cache_elems, 21), vf = RandomVector(cache_elems, 22);
    std::vector<uint16_t> kb(cache_elems), vb(cache_elems);
    for (size_t i = 0; i < cache_elems; ++i) kb[i] = F32ToBf16(kf[i]), vb[i] = F32ToBf16(vf[i]);
    auto kd32 = Up(kf), vd32 = Up(vf);
    auto kd16 = Up(kb), vd16 = Up(vb);
    const int64_t stride = static_cast<int64_t>(capacity) * kv_dim;
    const KvLayerView kv = bf16 ? KvLayerView{kd16.get(), vd16.get(), stride, sh.kvh, sh.hd, DType::kBF16}
                                : KvLayerView{kd32.get(), vd32.get(), stride, sh.kvh, sh.hd, DType::kF32};
    const std::vector<float> q = RandomVector(static_cast<size_t>(n) * sh.heads * sh.hd, 23, 0.5f);
    auto qd = Up(q);
    auto sl = Up(slots), ps = Up(positions);
    auto scratch = Zeros<float>(AttentionDecodeScratchFloats(n, sh.heads, capacity, sh.hd));
    auto counters = Zeros<int>(AttentionDecodeCounterInts(n, sh.kvh));
    auto two = Zeros<float>(q.size()), one = Zeros<float>(q.size());
    ASSERT_EQ(AttentionDecode(qd.get(), n, sl.get(), ps.get(), sh.heads, capacity, kv, scratch.get(), two.get(), nullptr),
              cudaSuccess);
    const std::vector<float> want = Down(two);
    for (int call = 0; call < 2; ++call) {
      ASSERT_EQ(AttentionDecodeFused(qd.get(), n, sl.get(), ps.get(), sh.heads, capacity, kv, scratch.get(),
                                     counters.get(), one.get(), nullptr),
                cudaSuccess);
      ASSERT_TRUE(Bitwise(want, Down(one).data())) << "heads " << sh.heads << " hd " << sh.hd << " call " << call;
      for (int c : Down(counters)) ASSERT_EQ(c, 0) << "a counter was left set";
    }
    const size_t row = static_cast<size_t>(sh.heads) * sh.hd;
    for (int i = 0; i < n; ++i) {
      auto alone = Zeros<float>(row);
      ASSERT_EQ(AttentionDecodeFused(qd.get() + i * row, 1, sl.get() + i, ps.get() + i, sh.heads, capacity, kv,
                                     scratch.get(), counters.get(), alone.get(), nullptr),
                cudaSuccess);
      ASSERT_TRUE(Bitwise(Down(alone), want.data() + i * row)) << "token " << i << " alone";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KvTypes, CudaNewKernelsAttentionTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(info.param == DType::kBF16 ? "bf16" : "f32"); });

}  // namespace
}  // namespace layerskip::cuda
