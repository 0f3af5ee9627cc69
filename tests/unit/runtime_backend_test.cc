// The Backend contract (engine/runtime/backend.h) on the CPU backend: a forward in pieces (layer ranges,
// token chunks) equals the forward at once bitwise; the heads on chosen rows equal the heads on gathered
// rows; argmax equals the argmax of the logits; activations round-trip through Upload / Download / CopyRows;
// truncate and release; bad batches, rows and ids are errors that change nothing; the device spec and the
// factory's errors.
#include <cstring>

#include "engine/runtime/cpu_backend.h"
#include "engine/runtime/factory/create_backend.h"
#include "gtest/gtest.h"
#include "kernels/sampling.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

using testing::RandomModel;
using testing::SmallConfig;

std::vector<float> Host(Backend& b, const Activations& x) {
  std::vector<float> h(static_cast<size_t>(x.rows()) * x.width());
  EXPECT_TRUE(b.Download(x, h.data()).ok());
  return h;
}

std::vector<int> Ids(int n, int vocab, int seed) {
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back((seed + 7 * i) % vocab);
  return ids;
}

TEST(BackendContractTest, ForwardInPiecesEqualsForwardAtOnce) {
  const LlamaConfig c = SmallConfig(6);
  auto m = RandomModel(c, WeightType::kBF16, 21, 8.0f, 3);
  const int L = c.num_hidden_layers;
  auto whole = CreateBackend(*m, DeviceSpec::Cpu(), 2);
  auto piece = CreateBackend(*m, DeviceSpec::Cpu(), 2);
  ASSERT_TRUE(whole.ok() && piece.ok());
  const std::vector<int> ids = Ids(9, c.vocab_size, 3);
  TokenBatch all;
  for (int i = 0; i < 9; ++i) all.Add(1, i);
  auto x = (*whole)->NewActivations(9);
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE((*whole)->Embed(ids, **x).ok());
  ASSERT_TRUE((*whole)->Forward(0, L, all, **x).ok());

  // The same tokens as chunks of 4, 4, 1, each through [0, 2), [2, 5), [5, L).
  std::vector<float> pieces;
  for (int begin = 0; begin < 9; begin += 4) {
    const int n = std::min(4, 9 - begin);
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(1, begin + i);
    auto y = (*piece)->NewActivations(n);
    ASSERT_TRUE(y.ok());
    ASSERT_TRUE((*piece)->Embed(std::vector<int>(ids.begin() + begin, ids.begin() + begin + n), **y).ok());
    const std::pair<int, int> ranges[] = {{0, 2}, {2, 5}, {5, L}};
    for (auto [a, e] : ranges) ASSERT_TRUE((*piece)->Forward(a, e, b, **y).ok());
    const auto h = Host(**piece, **y);
    pieces.insert(pieces.end(), h.begin(), h.end());
  }
  const auto want = Host(**whole, **x);
  ASSERT_EQ(want.size(), pieces.size());
  EXPECT_EQ(0, std::memcmp(want.data(), pieces.data(), sizeof(float) * want.size()));
  for (int l = 0; l < L; ++l) EXPECT_EQ((*piece)->length(l, 1), 9);
  EXPECT_EQ((*piece)->length(0, 0), 0);

  // Heads on chosen rows equal the heads of those rows alone; argmax equals the logits' argmax.
  const int V = c.vocab_size;
  const std::vector<int> rows = {8, 2, 5};
  std::vector<float> logits(rows.size() * V), draft(rows.size() * V);
  std::vector<int> argmax(rows.size()), draft_argmax(rows.size());
  ASSERT_TRUE((*whole)->ExitHead(**x, rows, logits.data()).ok());
  ASSERT_TRUE((*whole)->ExitArgmax(**x, rows, argmax.data()).ok());
  ASSERT_TRUE((*whole)->DraftHead(**x, rows, draft.data()).ok());
  ASSERT_TRUE((*whole)->DraftArgmax(**x, rows, draft_argmax.data()).ok());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<float> one(V);
    ASSERT_TRUE((*whole)->ExitHead(**x, {rows[i]}, one.data()).ok());
    EXPECT_EQ(0, std::memcmp(one.data(), logits.data() + i * V, sizeof(float) * V)) << "row " << rows[i];
    EXPECT_EQ(argmax[i], cpu::Argmax(logits.data() + i * V, V));
    EXPECT_EQ(draft_argmax[i], argmax[i]);  // no draft vocabulary: the draft head is the exit head
  }
  EXPECT_EQ(0, std::memcmp(draft.data(), logits.data(), sizeof(float) * logits.size()));
}

TEST(BackendContractTest, ActivationsRoundTripAndCopyRows) {
  const LlamaConfig c = SmallConfig(2);
  auto m = RandomModel(c, WeightType::kF32, 2);
  auto b = CreateBackend(*m, DeviceSpec::Cpu(), 1);
  ASSERT_TRUE(b.ok());
  const int D = c.hidden_size;
  std::vector<float> host(3 * D);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f;
  auto x = (*b)->NewActivations(3);
  auto y = (*b)->NewActivations(4);
  ASSERT_TRUE(x.ok() && y.ok());
  ASSERT_TRUE((*b)->Upload(host.data(), **x).ok());
  EXPECT_EQ(Host(**b, **x), host);
  ASSERT_TRUE((*b)->CopyRows(**x, 1, 2, **y, 2).ok());  // y rows 2, 3 = x rows 1, 2
  const auto got = Host(**b, **y);
  EXPECT_EQ(std::vector<float>(got.begin() + 2 * D, got.end()), std::vector<float>(host.begin() + D, host.end()));
  EXPECT_EQ((*b)->CopyRows(**x, 2, 2, **y, 0).code(), absl::StatusCode::kInvalidArgument);  // past x's rows
  EXPECT_EQ((*b)->CopyRows(**x, 0, 1, **y, 4).code(), absl::StatusCode::kInvalidArgument);  // past y's rows
  std::vector<float> logits(c.vocab_size);
  EXPECT_EQ((*b)->ExitHead(**x, {3}, logits.data()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*b)->NewActivations(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BackendContractTest, TruncateReleaseAndBadBatches) {
  const LlamaConfig c = SmallConfig(3);
  auto m = RandomModel(c, WeightType::kF32, 5);
  auto made = CreateBackend(*m, DeviceSpec::Cpu(), 2);
  ASSERT_TRUE(made.ok());
  Backend& b = **made;
  EXPECT_EQ(b.num_slots(), 2);
  EXPECT_EQ(b.capacity(), m->context);
  EXPECT_EQ(b.device().ToString(), "cpu");
  EXPECT_GT(b.kv_cache_bytes(), 0);
  auto run = [&](int slot, int first, int n, int a, int e) {
    TokenBatch batch;
    for (int i = 0; i < n; ++i) batch.Add(slot, first + i);
    auto x = b.NewActivations(n);
    EXPECT_TRUE(x.ok());
    EXPECT_TRUE(b.Embed(Ids(n, c.vocab_size, slot), **x).ok());
    return b.Forward(a, e, batch, **x);
  };
  ASSERT_TRUE(run(0, 0, 6, 0, 3).ok());
  b.TruncateLayers(0, 1, 3, 4);  // layers 1, 2 keep 4
  EXPECT_EQ(b.length(0, 0), 6);
  EXPECT_EQ(b.length(1, 0), 4);
  EXPECT_EQ(b.length(2, 0), 4);
  b.Truncate(0, 5);  // never grows a layer
  EXPECT_EQ(b.length(0, 0), 5);
  EXPECT_EQ(b.length(2, 0), 4);
  // Layers at different lengths cannot run together; a gap, a wrong slot, past the context, a bad range.
  EXPECT_EQ(run(0, 5, 1, 0, 3).code(), absl::StatusCode::kFailedPrecondition);
  b.Truncate(0, 4);
  EXPECT_EQ(run(0, 5, 1, 0, 3).code(), absl::StatusCode::kInvalidArgument);  // position 4 comes next
  EXPECT_EQ(run(2, 0, 1, 0, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(run(1, 0, 1, 0, 4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(run(1, m->context, 1, 0, 3).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(b.length(0, 1), 0);  // nothing touched
  EXPECT_EQ(b.length(0, 0), 4);
  // Rows and activations must match the batch; ids must be in the vocabulary.
  TokenBatch two;
  two.Add(1, 0);
  two.Add(1, 1);
  auto one = b.NewActivations(1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(b.Forward(0, 3, two, **one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.Embed({c.vocab_size}, **one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.Embed({1, 2}, **one).code(), absl::StatusCode::kInvalidArgument);
  // Release: the slot starts over.
  b.Reset(0);
  for (int l = 0; l < 3; ++l) EXPECT_EQ(b.length(l, 0), 0);
  EXPECT_TRUE(run(0, 0, 2, 0, 3).ok());
}

TEST(DeviceSpecTest, ParseAndToString) {
  for (const char* ok : {"cpu", "cuda", "cuda:0", "cuda:7", "cuda:1023"}) {
    auto d = DeviceSpec::Parse(ok);
    ASSERT_TRUE(d.ok()) << ok;
    EXPECT_EQ(d->ToString(), std::string(ok) == "cuda" ? "cuda:0" : ok);
  }
  EXPECT_TRUE(DeviceSpec::Parse("cuda:3")->is_cuda());
  EXPECT_EQ(DeviceSpec::Parse("cuda:3")->index, 3);
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1024", "CPU", "cuda:0 ", "cuda0"}) {
    auto d = DeviceSpec::Parse(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("device '"), std::string::npos) << d.status();
  }
}

// Without a usable GPU (no CUDA in this build, or no device), asking for one names the device and why.
TEST(DeviceSpecTest, MissingGpuIsAClearError) {
  const auto dev = DeviceSpec::Cuda(0);
  const absl::Status s = CheckDevice(dev);
  if (s.ok()) GTEST_SKIP() << "this build and machine have cuda:0";
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message().rfind("cuda:0: ", 0), 0u) << s;
  const LlamaConfig c = SmallConfig(2);
  auto m = RandomModel(c, WeightType::kF32, 1);
  auto b = CreateBackend(*m, dev, 1);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status(), s);
  EXPECT_TRUE(CheckDevice(DeviceSpec::Cpu()).ok());
}

}  // namespace
}  // namespace layerskip
