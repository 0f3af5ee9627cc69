// Each CUDA op against the CPU op of the same name, over shapes and weight dtypes, with the tolerance stated
// at each check; and the bitwise batch invariance of the CUDA matmul and attention. Skipped without a GPU.
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/model/weights.h"
#include "engine/util/rng.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/device_weight.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/swiglu.h"
#include "tests/gpu/cpu_reference.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"

namespace layerskip::cuda {
namespace {

using ::layerskip::cuda::testing::Down;
using ::layerskip::cuda::testing::RandomVector;
using ::layerskip::cuda::testing::Up;
using ::layerskip::cuda::testing::Zeros;

std::unique_ptr<Matrix> RandomMatrix(WeightType type, int64_t rows, int64_t cols, uint64_t seed) {
  auto m = std::make_unique<Matrix>(type, rows, cols);
  const std::vector<float> v = RandomVector(rows * cols, seed);
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (type == WeightType::kF32) static_cast<float*>(m->data())[i] = v[i];
    else static_cast<uint16_t*>(m->data())[i] = F32ToBf16(v[i]);
  }
  return m;
}

DeviceWeight View(const Matrix& m, const DeviceBuffer<uint8_t>& data) {
  return {m.type() == WeightType::kBF16 ? DType::kBF16 : DType::kF32, m.rows(), m.cols(), data.get()};
}
DeviceBuffer<uint8_t> UpMatrix(const Matrix& m) {
  std::vector<uint8_t> bytes(m.bytes());
  std::memcpy(bytes.data(), m.data(), m.bytes());
  return Up(bytes);
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

class CudaMatmulTest : public ::testing::TestWithParam<WeightType> {
 protected:
  void SetUp() override { LS_SKIP_WITHOUT_GPU(); }
};

TEST_P(CudaMatmulTest, MatchesCpu) {
  for (int64_t K : {8, 40, 100, 2048})
    for (int64_t M : {1, 33, 256})
      for (int64_t n : {1, 3, 17, 64}) {
        const auto w = RandomMatrix(GetParam(), M, K, K * 7 + M);
        const std::vector<float> x = RandomVector(n * K, n + 100 * K);
        std::vector<float> ref(n * M);
        cpu::Matmul(x.data(), n, *w, ref.data(), nullptr);
        auto wd = UpMatrix(*w);
        auto xd = Up(x);
        auto yd = Zeros<float>(n * M);
        ASSERT_EQ(Matmul(xd.get(), n, View(*w, wd), yd.get(), nullptr), cudaSuccess);
        const std::vector<float> y = Down(yd);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < M; ++j) {
            // Both sides round each of K products-and-adds in f32 in different orders: |error| <= K * 2^-24 *
            // sum_k |x_k w_kj| (the recursive-summation bound), checked as written.
            double mag = 0;
            for (int64_t k = 0; k < K; ++k) mag += std::fabs(x[i * K + k] * w->At(j, k));
            ASSERT_NEAR(y[i * M + j], ref[i * M + j], K * std::ldexp(1.0, -24) * mag + 1e-30)
                << "K=" << K << " M=" << M << " n=" << n << " i=" << i << " j=" << j;
          }
      }
}

// y[i, :] for a token computed in batches of 1..64 tokens (every token tile variant) is bitwise the same.
TEST_P(CudaMatmulTest, BitwiseBatchInvariant) {
  const int64_t K = 2048 + 8, M = 300, N = 64;
  const auto w = RandomMatrix(GetParam(), M, K, 5);
  const std::vector<float> x = RandomVector(N * K, 6);
  auto wd = UpMatrix(*w);
  auto xd = Up(x);
  auto all = Zeros<float>(N * M);
  ASSERT_EQ(Matmul(xd.get(), N, View(*w, wd), all.get(), nullptr), cudaSuccess);
  const std::vector<float> ref = Down(all);
  for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 17, 33}) {
    for (int64_t begin = 0; begin + n <= N; begin += 13) {
      auto yd = Zeros<float>(n * M);
      ASSERT_EQ(Matmul(xd.get() + begin * K, n, View(*w, wd), yd.get(), nullptr), cudaSuccess);
      const std::vector<float> y = Down(yd);
      ASSERT_EQ(std::memcmp(y.data(), ref.data() + begin * M, y.size() * sizeof(float)), 0)
          << "batch " << n << " at " << begin;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaMatmulTest, ::testing::Values(WeightType::kBF16, WeightType::kF32),
                         [](const auto& info) { return std::string(WeightTypeName(info.param)); });

TEST_F(CudaOpsTest, EmbeddingBitwise) {
  for (WeightType type : {WeightType::kBF16, WeightType::kF32}) {
    const auto table = RandomMatrix(type, 97, 72, 3);
    const std::vector<int> ids = {0, 96, 5, 5, 40};
    std::vector<float> ref(ids.size() * 72);
    cpu::Embedding(ids.data(), ids.size(), *table, ref.data());
    auto td = UpMatrix(*table);
    auto idd = Up(ids);
    auto out = Zeros<float>(ref.size());
    ASSERT_EQ(Embedding(idd.get(), ids.size(), View(*table, td), out.get(), nullptr), cudaSuccess);
    EXPECT_EQ(Down(out), ref);  // a copy (bf16 -> f32 is exact)
  }
}

TEST_F(CudaOpsTest, RmsNormMatchesCpu) {
  for (int64_t D : {64, 72, 2048, 4096}) {
    const int64_t n = 5;
    const std::vector<float> x = RandomVector(n * D, D), w = RandomVector(D, D + 1);
    std::vector<float> ref(n * D);
    cpu::RmsNorm(x.data(), w.data(), ref.data(), n, D, 1e-5f);
    auto xd = Up(x), wd = Up(w);
    auto yd = Zeros<float>(n * D);
    ASSERT_EQ(RmsNorm(xd.get(), wd.get(), yd.get(), n, D, 1e-5f, nullptr), cudaSuccess);
    const std::vector<float> y = Down(yd);
    // Only the sum of squares differs in order (relative error <= D * 2^-24), so 1e-5 relative + a floor.
    for (int64_t i = 0; i < n * D; ++i) ASSERT_NEAR(y[i], ref[i], 1e-5 * std::fabs(ref[i]) + 1e-7) << D << " " << i;
  }
}

TEST_F(CudaOpsTest, RopeBitwise) {
  LlamaConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0f;
  c.rope_scaling = RopeScaling{};
  const int max_pos = 300, heads = 6, n = 4;
  const cpu::RopeTable table(c.rope(), max_pos);
  const std::vector<int> positions = {0, 1, 150, 299};
  std::vector<float> v = RandomVector(n * heads * 64, 9), ref = v;
  for (int i = 0; i < n; ++i) cpu::ApplyRope(ref.data() + i * heads * 64, heads, 64, table, positions[i]);
  const size_t half = max_pos * 32;
  auto vd = Up(v);
  auto pd = Up(positions);
  auto cd = Up(std::vector<float>(table.cos(0), table.cos(0) + half));
  auto sd = Up(std::vector<float>(table.sin(0), table.sin(0) + half));
  ASSERT_EQ(ApplyRope(vd.get(), n, heads, 64, pd.get(), cd.get(), sd.get(), nullptr), cudaSuccess);
  EXPECT_EQ(Down(vd), ref);  // the same table and the same three roundings per element (-fmad=false)
}

TEST_F(CudaOpsTest, SwiGluMatchesCpu) {
  const std::vector<float> g = RandomVector(1000, 1, 4.0f), u = RandomVector(1000, 2);
  std::vector<float> ref(1000);
  cpu::SwiGlu(g.data(), u.data(), ref.data(), 1000);
  auto gd = Up(g), ud = Up(u);
  ASSERT_EQ(SwiGlu(gd.get(), ud.get(), gd.get(), 1000, nullptr), cudaSuccess);
  const std::vector<float> y = Down(gd);
  // expf (CUDA, <= 2 ulp) vs glibc exp (<= 1 ulp): a few ulp relative.
  for (int i = 0; i < 1000; ++i) ASSERT_NEAR(y[i], ref[i], 1e-6 * std::fabs(ref[i]) + 1e-30) << i;
}

// An attention case: `lens` tokens per slot appended after `prefix` cached positions per slot.
struct AttnCase {
  int heads, kv_heads, head_dim;
  std::vector<int> prefix, lens;
};

TEST_F(CudaOpsTest, AttentionDecodeAndPrefillMatchCpuAndEachOther) {
  const std::vector<AttnCase> cases = {
      {4, 2, 16, {0}, {1}},           {4, 2, 16, {0, 70}, {100, 1}},  {8, 8, 8, {63, 64}, {2, 3}},
      {4, 4, 24, {10}, {130}},        {32, 8, 64, {200, 0}, {5, 65}}, {32, 8, 128, {127, 1}, {9, 64}},
      {64, 8, 128, {0}, {70}},        {8, 2, 256, {65}, {3}},
  };
  for (const AttnCase& ac : cases) {
    const int S = static_cast<int>(ac.lens.size()), hd = ac.head_dim, kvd = ac.kv_heads * hd;
    const int capacity = 512;
    std::vector<int> slots, positions;
    for (int s = 0; s < S; ++s)
      for (int t = 0; t < ac.lens[s]; ++t) {
        slots.push_back(s);
        positions.push_back(ac.prefix[s] + t);
      }
    const int n = static_cast<int>(slots.size());
    const std::vector<float> kc = RandomVector(static_cast<size_t>(S) * capacity * kvd, hd + n);
    const std::vector<float> vc = RandomVector(kc.size(), hd + n + 1);
    const std::vector<float> q = RandomVector(static_cast<size_t>(n) * ac.heads * hd, n, 0.5f);
    cpu::KvLayerView ck{kc.data(), vc.data(), static_cast<int64_t>(capacity) * kvd, ac.kv_heads, hd};
    std::vector<float> ref(q.size());
    cpu::Attention(q.data(), n, slots.data(), positions.data(), ac.heads, ck, ref.data(), nullptr);

    auto kd = Up(kc), vd = Up(vc), qd = Up(q);
    auto sd = Up(slots), pd = Up(positions);
    KvLayerView gk{kd.get(), vd.get(), static_cast<int64_t>(capacity) * kvd, ac.kv_heads, hd};
    auto scratch = Zeros<float>(AttentionDecodeScratchFloats(n, ac.heads, capacity, hd));
    auto dec = Zeros<float>(q.size()), pre = Zeros<float>(q.size());
    ASSERT_EQ(AttentionDecode(qd.get(), n, sd.get(), pd.get(), ac.heads, capacity, gk, scratch.get(), dec.get(),
                              nullptr),
              cudaSuccess);
    const int group = ac.heads / ac.kv_heads, tile = AttentionTileTokens(group);
    const std::vector<int> tiles = AttentionTiles(slots.data(), n, group);
    auto td = Up(tiles);
    ASSERT_EQ(AttentionPrefill(qd.get(), td.get(), static_cast<int>(tiles.size()) / tile, tile, sd.get(), pd.get(),
                               ac.heads, gk, pre.get(), nullptr),
              cudaSuccess);
    const std::vector<float> a = Down(dec), b = Down(pre);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
        << "decode and prefill kernels differ: heads " << ac.heads << " hd " << hd;
    // Outputs are convex combinations of N(0,1) values; softmax and sums in other orders: 2e-5 absolute.
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], ref[i], 2e-5) << "heads " << ac.heads << " hd " << hd;

    // A token alone gives the same bits as inside the batch.
    for (int i = 0; i < n; i += 7) {
      auto one = Zeros<float>(ac.heads * hd);
      ASSERT_EQ(AttentionDecode(qd.get() + static_cast<size_t>(i) * ac.heads * hd, 1, sd.get() + i, pd.get() + i,
                                ac.heads, capacity, gk, scratch.get(), one.get(), nullptr),
                cudaSuccess);
      const std::vector<float> o = Down(one);
      ASSERT_EQ(std::memcmp(o.data(), a.data() + static_cast<size_t>(i) * ac.heads * hd, o.size() * sizeof(float)), 0)
          << "token " << i;
    }
  }
}

TEST_F(CudaOpsTest, StoreKvWritesRows) {
  const int kvd = 32, capacity = 8;
  auto kc = Zeros<float>(2 * capacity * kvd), vc = Zeros<float>(2 * capacity * kvd);
  const std::vector<float> k = RandomVector(2 * kvd, 1), v = RandomVector(2 * kvd, 2);
  auto kd = Up(k), vd = Up(v);
  auto sd = Up(std::vector<int>{1, 0}), pd = Up(std::vector<int>{3, 7});
  KvLayerView view{kc.get(), vc.get(), capacity * kvd, 2, 16};
  ASSERT_EQ(StoreKv(kd.get(), vd.get(), 2, sd.get(), pd.get(), view, nullptr), cudaSuccess);
  const std::vector<float> kh = Down(kc), vh = Down(vc);
  EXPECT_EQ(std::memcmp(kh.data() + (1 * capacity + 3) * kvd, k.data(), kvd * 4), 0);
  EXPECT_EQ(std::memcmp(vh.data() + (0 * capacity + 7) * kvd, v.data() + kvd, kvd * 4), 0);
}

TEST_F(CudaOpsTest, ArgmaxSoftmaxAndSampling) {
  const int64_t V = 128256;
  std::vector<float> logits = RandomVector(3 * V, 11, 3.0f);
  logits[V + 5] = logits[V + 77] = 100.0f;  // a tie: the first index wins
  std::vector<int> ref(3);
  for (int r = 0; r < 3; ++r) ref[r] = cpu::Argmax(logits.data() + r * V, V);
  auto ld = Up(logits);
  auto ids = Zeros<int>(3);
  ASSERT_EQ(Argmax(ld.get(), 3, V, ids.get(), nullptr), cudaSuccess);
  EXPECT_EQ(Down(ids), ref);

  auto probs = Zeros<float>(3 * V);
  ASSERT_EQ(SoftmaxTemperature(ld.get(), 3, V, 0.7f, probs.get(), nullptr), cudaSuccess);
  const std::vector<float> p = Down(probs);
  std::vector<float> pref(V);
  SamplingParams sp;
  sp.temperature = 0.7f;
  for (int r = 0; r < 3; ++r) {
    cpu::SamplingProbs(logits.data() + r * V, V, sp, pref.data());
    // exp in other libraries and the double sum in another order: 1e-5 relative.
    for (int64_t i = 0; i < V; ++i) ASSERT_NEAR(p[r * V + i], pref[i], 1e-5 * pref[i] + 1e-12) << r << " " << i;
  }

  // Dyadic probabilities (multiples of 1/64): every partial sum is exact, so draws equal the CPU's bit for bit.
  std::vector<float> dy(V, 0.0f);
  for (int64_t i = 0; i < V; i += 4099) dy[i] = static_cast<float>((i % 7) + 1) / 64.0f;
  const std::vector<double> us = {0.0, 0.13, 0.5, 0.77, 0.999};
  auto dd = Up(dy);
  for (double u : us) {
    auto ud = Up(std::vector<double>{u});
    auto id = Zeros<int>(1);
    ASSERT_EQ(SampleFromProbs(dd.get(), 1, V, ud.get(), id.get(), nullptr), cudaSuccess);
    EXPECT_EQ(Down(id)[0], cpu::SampleFromProbs(dy.data(), V, u)) << "u = " << u;
  }
}

}  // namespace
}  // namespace layerskip::cuda
