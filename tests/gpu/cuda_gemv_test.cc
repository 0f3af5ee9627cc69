// The decode GEMV and the fused layer ops (issue 17), on the device: Gemv bitwise equal to its CPU emulation
// (GemvReference: the kernel's exact order) and within the summation bound of cpu::Matmul; a row alone
// bitwise equal to the same row in batches of 2..16 (and past one tile); split 1 bitwise the old Matmul; the
// epilogues and RopeStoreKv bitwise equal to the unfused op sequences; the bf16 KV cache rounding once on
// store and the attention over it bitwise the attention over the rounded values. Skipped without a GPU.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/weights.h"
#include "engine/util/bf16.h"
#include "engine/util/rng.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/device_weight.h"
#include "kernels/gemv_plan.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/gpu/gemv_test_util.h"

namespace layerskip::cuda {
namespace {

using ::layerskip::cuda::testing::Bitwise;
using ::layerskip::cuda::testing::DeviceMatrix;
using ::layerskip::cuda::testing::Down;
using ::layerskip::cuda::testing::HostWeight;
using ::layerskip::cuda::testing::RandomWeight;
using ::layerskip::cuda::testing::RandomVector;
using ::layerskip::cuda::testing::Up;
using ::layerskip::cuda::testing::UpWeight;
using ::layerskip::cuda::testing::Zeros;

class CudaGemvTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

// Shapes with split-K 1, 2, 4 and 8, short and odd row counts, K not a multiple of 256.
const std::pair<int64_t, int64_t> kShapes[] = {{33, 40},    {300, 2056}, {512, 2048}, {1024, 8192},
                                               {7, 65536},  {1, 8},      {1000, 256}, {256, 1024}};

TEST_P(CudaGemvTest, BitwiseItsCpuEmulationAndNearCpuMatmul) {
  for (auto [M, K] : kShapes) {
    const HostWeight w = RandomWeight(GetParam(), M, K, M * 31 + K);
    DeviceMatrix wd = UpWeight(*w.m);
    for (int64_t n : {1, 3, 16, 17, 40}) {
      if (n == 40 && M * K > (1 << 20)) continue;  // the CPU emulation of the big shapes dominates the run
      const std::vector<float> x = RandomVector(n * K, n + 7 * K);
      std::vector<float> emu(n * M), ref(n * M);
      GemvReference(x.data(), n, w.f32.data(), M, K, emu.data());
      cpu::Matmul(x.data(), n, *w.m, ref.data(), nullptr);
      auto xd = Up(x);
      auto yd = Zeros<float>(n * M);
      ASSERT_EQ(Gemv(xd.get(), n, wd.view, GemvEpilogue::kStore, yd.get(), nullptr), cudaSuccess);
      const std::vector<float> y = Down(yd);
      ASSERT_TRUE(Bitwise(y, emu.data())) << M << "x" << K << " n=" << n << " split " << GemvSplitK(M, K);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < M; ++j) {
          double mag = 0;
          for (int64_t k = 0; k < K; ++k) mag += std::fabs(x[i * K + k] * w.f32[j * K + k]);
          ASSERT_NEAR(y[i * M + j], ref[i * M + j], K * std::ldexp(1.0, -24) * mag + 1e-30) << M << "x" << K;
        }
    }
  }
}

// A token's row alone is bitwise the same row inside batches of 2..16 (every tile size, R = 2 and 4) and of
// 17 and 40 (several tiles), at every offset in the batch.
TEST_P(CudaGemvTest, RowAloneEqualsRowInABatch) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{3072, 2048}, {512, 2048}, {300, 2056}}) {
    const HostWeight w = RandomWeight(GetParam(), M, K, 3);
    DeviceMatrix wd = UpWeight(*w.m);
    const int64_t N = 40;
    const std::vector<float> x = RandomVector(N * K, 4);
    auto xd = Up(x);
    std::vector<std::vector<float>> alone(N);
    for (int64_t i = 0; i < N; ++i) {
      auto yd = Zeros<float>(M);
      ASSERT_EQ(Gemv(xd.get() + i * K, 1, wd.view, GemvEpilogue::kStore, yd.get(), nullptr), cudaSuccess);
      alone[i] = Down(yd);
    }
    for (int64_t n = 2; n <= N; n += (n < 17 ? 1 : 23)) {
      auto yd = Zeros<float>(n * M);
      const int64_t begin = (n * 5) % (N - n + 1);
      ASSERT_EQ(Gemv(xd.get() + begin * K, n, wd.view, GemvEpilogue::kStore, yd.get(), nullptr), cudaSuccess);
      const std::vector<float> y = Down(yd);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_TRUE(Bitwise(alone[begin + i], y.data() + i * M)) << M << "x" << K << ": row " << i << " of " << n;
    }
  }
}

// With a split of 1 the decode GEMV runs the old Matmul's order exactly.
TEST_P(CudaGemvTest, SplitOneIsBitwiseTheOldMatmul) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{1000, 256}, {33, 40}, {4096, 4096}}) {
    ASSERT_EQ(GemvSplitK(M, K), 1);
    const HostWeight w = RandomWeight(GetParam(), M, K, 9);
    DeviceMatrix wd = UpWeight(*w.m);
    for (int64_t n : {1, 5, 16, 20}) {
      auto xd = Up(RandomVector(n * K, n));
      auto a = Zeros<float>(n * M), b = Zeros<float>(n * M);
      ASSERT_EQ(Gemv(xd.get(), n, wd.view, GemvEpilogue::kStore, a.get(), nullptr), cudaSuccess);
      ASSERT_EQ(Matmul(xd.get(), n, wd.view, b.get(), nullptr), cudaSuccess);
      ASSERT_TRUE(Bitwise(Down(a), Down(b).data())) << M << "x" << K << " n=" << n;
    }
  }
}

// The residual-add and SwiGLU epilogues are bitwise the unfused Gemv + AddInPlace / Gemv + SwiGlu.
TEST_P(CudaGemvTest, EpiloguesEqualTheUnfusedOps) {
  for (auto [F, K] : {std::pair<int64_t, int64_t>{96, 64}, {8192, 2048}, {344, 256}, {1024, 8192}}) {
    const HostWeight w = RandomWeight(GetParam(), 2 * F, K, F + K);  // [gate; up]
    DeviceMatrix wd = UpWeight(*w.m);
    for (int64_t n : {1, 4, 16, 19}) {
      auto xd = Up(RandomVector(n * K, n + 1));
      // SwiGLU: y[n, F] = silu(x gate^T) * (x up^T) against Gemv over the stacked matrix, then SwiGlu.
      auto full = Zeros<float>(n * 2 * F), fused = Zeros<float>(n * F);
      ASSERT_EQ(Gemv(xd.get(), n, wd.view, GemvEpilogue::kSwiGlu, fused.get(), nullptr), cudaSuccess);
      ASSERT_EQ(Gemv(xd.get(), n, wd.view, GemvEpilogue::kStore, full.get(), nullptr), cudaSuccess);
      std::vector<float> g(n * F), u(n * F);
      const std::vector<float> fh = Down(full);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < F; ++j) g[i * F + j] = fh[i * 2 * F + j], u[i * F + j] = fh[i * 2 * F + F + j];
      auto gd = Up(g), ud = Up(u);
      ASSERT_EQ(SwiGlu(gd.get(), ud.get(), gd.get(), n * F, nullptr), cudaSuccess);
      ASSERT_TRUE(Bitwise(Down(fused), Down(gd).data())) << "SwiGLU " << F << "x" << K << " n=" << n;
      // Residual add: y0 + x W^T.
      const std::vector<float> y0 = RandomVector(n * 2 * F, n + 2);
      auto added = Up(y0), base = Up(y0);
      ASSERT_EQ(Gemv(xd.get(), n, wd.view, GemvEpilogue::kAdd, added.get(), nullptr), cudaSuccess);
      ASSERT_EQ(AddInPlace(base.get(), full.get(), n * 2 * F, nullptr), cudaSuccess);
      ASSERT_TRUE(Bitwise(Down(added), Down(base).data())) << "add " << F << "x" << K << " n=" << n;
    }
  }
}

// RMSNorm folded into the GEMV is bitwise RmsNorm then the GEMV, for every epilogue, split and tile.
TEST_P(CudaGemvTest, FoldedNormEqualsRmsNormThenGemv) {
  for (auto [M, K] : {std::pair<int64_t, int64_t>{96, 64}, {3072, 2048}, {512, 2048}, {2048, 4096}, {688, 256}}) {
    const HostWeight w = RandomWeight(GetParam(), M, K, M + 3 * K);
    DeviceMatrix wd = UpWeight(*w.m);
    auto nd = Up(RandomVector(K, K, 0.5f));
    for (int64_t n : {1, 2, 5, 16, 40}) {
      auto xd = Up(RandomVector(n * K, n + 11, 3.0f));
      auto hd = Zeros<float>(n * K);
      ASSERT_EQ(RmsNorm(xd.get(), nd.get(), hd.get(), n, K, 1e-5f, nullptr), cudaSuccess);
      for (GemvEpilogue ep : {GemvEpilogue::kStore, GemvEpilogue::kAdd, GemvEpilogue::kSwiGlu}) {
        const int64_t out = ep == GemvEpilogue::kSwiGlu ? n * M / 2 : n * M;
        const std::vector<float> y0 = RandomVector(out, n + 5);
        auto a = Up(y0), b = Up(y0);
        ASSERT_EQ(Gemv(xd.get(), n, wd.view, ep, a.get(), nullptr, nd.get(), 1e-5f), cudaSuccess);
        ASSERT_EQ(Gemv(hd.get(), n, wd.view, ep, b.get(), nullptr), cudaSuccess);
        ASSERT_TRUE(Bitwise(Down(a), Down(b).data()))
            << M << "x" << K << " n=" << n << " epilogue " << static_cast<int>(ep);
      }
    }
  }
}

TEST_P(CudaGemvTest, RejectsShapesItDoesNotTake) {
  const HostWeight w = RandomWeight(GetParam(), 5, 12, 1);  // K % 8 != 0: the model keeps Matmul for it
  DeviceMatrix wd = UpWeight(*w.m);
  EXPECT_FALSE(GemvSupported(wd.view, GemvEpilogue::kStore));
  auto xd = Up(RandomVector(12, 1));
  auto yd = Zeros<float>(5);
  EXPECT_EQ(Gemv(xd.get(), 1, wd.view, GemvEpilogue::kStore, yd.get(), nullptr), cudaErrorInvalidValue);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaGemvTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

class CudaFusedOpsTest : public ::testing::TestWithParam<DType> {  // the KV cache's type
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
  bool bf16() const { return GetParam() == DType::kBF16; }
  size_t elem() const { return bf16() ? 2 : 4; }
};

// RopeStoreKv over [q | k | v] rows is bitwise ApplyRope(q), ApplyRope(k), StoreKv(k, v).
TEST_P(CudaFusedOpsTest, RopeStoreKvEqualsTheUnfusedOps) {
  LlamaConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  const int heads = 8, kvh = 2, hd = 64, capacity = 300, slots_n = 2, n = 5;
  const int q_dim = heads * hd, kv_dim = kvh * hd, row = q_dim + 2 * kv_dim;
  const cpu::RopeTable table(c.rope(), capacity);
  const size_t half = static_cast<size_t>(capacity) * hd / 2;
  auto cd = Up(std::vector<float>(table.cos(0), table.cos(0) + half));
  auto sd = Up(std::vector<float>(table.sin(0), table.sin(0) + half));
  const std::vector<int> slots = {1, 0, 1, 1, 0}, positions = {0, 7, 64, 299, 130};
  auto sl = Up(slots), ps = Up(positions);
  const std::vector<float> qkv = RandomVector(static_cast<size_t>(n) * row, 12);
  std::vector<float> q(n * q_dim), k(n * kv_dim), v(n * kv_dim);
  for (int i = 0; i < n; ++i) {
    std::memcpy(&q[i * q_dim], &qkv[i * row], q_dim * 4);
    std::memcpy(&k[i * kv_dim], &qkv[i * row + q_dim], kv_dim * 4);
    std::memcpy(&v[i * kv_dim], &qkv[i * row + q_dim + kv_dim], kv_dim * 4);
  }
  const size_t cache_bytes = static_cast<size_t>(slots_n) * capacity * kv_dim * elem();
  auto k1 = Zeros<uint8_t>(cache_bytes), v1 = Zeros<uint8_t>(cache_bytes);
  auto k2 = Zeros<uint8_t>(cache_bytes), v2 = Zeros<uint8_t>(cache_bytes);
  const int64_t stride = static_cast<int64_t>(capacity) * kv_dim;
  const KvLayerView fused{k1.get(), v1.get(), stride, kvh, hd, GetParam()};
  const KvLayerView plain{k2.get(), v2.get(), stride, kvh, hd, GetParam()};
  auto qkvd = Up(qkv);
  auto q_fused = Zeros<float>(q.size());
  ASSERT_EQ(RopeStoreKv(qkvd.get(), n, heads, sl.get(), ps.get(), cd.get(), sd.get(), q_fused.get(), fused, nullptr),
            cudaSuccess);
  auto qd = Up(q), kd = Up(k), vd = Up(v);
  ASSERT_EQ(ApplyRope(qd.get(), n, heads, hd, ps.get(), cd.get(), sd.get(), nullptr), cudaSuccess);
  ASSERT_EQ(ApplyRope(kd.get(), n, kvh, hd, ps.get(), cd.get(), sd.get(), nullptr), cudaSuccess);
  ASSERT_EQ(StoreKv(kd.get(), vd.get(), n, sl.get(), ps.get(), plain, nullptr), cudaSuccess);
  EXPECT_TRUE(Bitwise(Down(q_fused), Down(qd).data()));
  EXPECT_EQ(Down(k1), Down(k2));
  EXPECT_EQ(Down(v1), Down(v2));
}

// A bf16 cache holds F32ToBf16 of each stored value (the host rounding, NaN included), and attention over
// it is bitwise attention over an f32 cache holding the rounded values (the widening is exact).
TEST(CudaBf16KvTest, RoundsOnceOnStoreAndAttentionReadsTheRoundedValues) {
  LS_SKIP_WITHOUT_GPU();
  const int heads = 8, kvh = 2, hd = 64, capacity = 200, kv_dim = kvh * hd, n = 130;
  std::vector<int> slots(n, 0), positions(n);
  for (int i = 0; i < n; ++i) positions[i] = i;
  std::vector<float> k = RandomVector(static_cast<size_t>(n) * kv_dim, 1), v = RandomVector(k.size(), 2);
  k[3] = 1.00390625f;                 // a tie: rounds to even (1.0)
  k[4] = std::nanf("");
  v[5] = 3.0e38f;                     // near the top of the range: rounds as the host does
  auto kd = Up(k), vd = Up(v);
  auto sl = Up(slots), ps = Up(positions);
  const int64_t stride = static_cast<int64_t>(capacity) * kv_dim;
  auto kb = Zeros<uint16_t>(capacity * kv_dim), vb = Zeros<uint16_t>(capacity * kv_dim);
  const KvLayerView b16{kb.get(), vb.get(), stride, kvh, hd, DType::kBF16};
  ASSERT_EQ(StoreKv(kd.get(), vd.get(), n, sl.get(), ps.get(), b16, nullptr), cudaSuccess);
  const std::vector<uint16_t> kh = Down(kb), vh = Down(vb);
  std::vector<float> kr(capacity * kv_dim, 0.0f), vr(capacity * kv_dim, 0.0f);
  for (size_t i = 0; i < k.size(); ++i) {
    ASSERT_EQ(kh[i], F32ToBf16(k[i])) << i;
    ASSERT_EQ(vh[i], F32ToBf16(v[i])) << i;
    kr[i] = Bf16ToF32(kh[i]);
    vr[i] = Bf16ToF32(vh[i]);
  }
  // Attention (no NaN / inf in the cache this time: store finite values again).
  k[4] = 0.5f;
  v[5] = 0.25f;
  kr[4] = 0.5f;
  vr[5] = 0.25f;
  auto kd2 = Up(k), vd2 = Up(v);
  ASSERT_EQ(StoreKv(kd2.get(), vd2.get(), n, sl.get(), ps.get(), b16, nullptr), cudaSuccess);
  auto kf = Up(kr), vf = Up(vr);
  const KvLayerView f32{kf.get(), vf.get(), stride, kvh, hd, DType::kF32};
  const std::vector<float> q = RandomVector(static_cast<size_t>(n) * heads * hd, 3, 0.5f);
  auto qd = Up(q);
  auto scratch = Zeros<float>(AttentionDecodeScratchFloats(n, heads, capacity, hd));
  auto a = Zeros<float>(q.size()), b = Zeros<float>(q.size()), p = Zeros<float>(q.size());
  ASSERT_EQ(AttentionDecode(qd.get(), n, sl.get(), ps.get(), heads, capacity, b16, scratch.get(), a.get(), nullptr),
            cudaSuccess);
  const std::vector<float> a_host = Down(a);
  ASSERT_EQ(AttentionDecode(qd.get(), n, sl.get(), ps.get(), heads, capacity, f32, scratch.get(), b.get(), nullptr),
            cudaSuccess);
  EXPECT_TRUE(Bitwise(a_host, Down(b).data()));
  const int tile = AttentionTileTokens(heads / kvh);
  const std::vector<int> tiles = AttentionTiles(slots.data(), n, heads / kvh);
  auto td = Up(tiles);
  ASSERT_EQ(AttentionPrefill(qd.get(), td.get(), static_cast<int>(tiles.size()) / tile, tile, sl.get(), ps.get(),
                             heads, b16, p.get(), nullptr),
            cudaSuccess);
  EXPECT_TRUE(Bitwise(a_host, Down(p).data())) << "prefill attention over the bf16 cache";
}

INSTANTIATE_TEST_SUITE_P(KvTypes, CudaFusedOpsTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(info.param == DType::kBF16 ? "bf16" : "f32"); });

}  // namespace
}  // namespace layerskip::cuda
