// Zero-copy loading: bf16 and f32 tensors of the load's type are used in place from the memory map, with
// the same values as the copy path; misaligned tensor data falls back to a copy; conversions and int8 copy.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "engine/model/weights.h"
#include "gtest/gtest.h"

namespace layerskip {
namespace {

namespace fs = std::filesystem;

fs::path Fixture(const std::string& name) { return fs::path(LAYERSKIP_SOURCE_DIR) / "tests/fixtures/hf" / name; }

std::vector<const Matrix*> Matrices(const ModelWeights& w) {
  std::vector<const Matrix*> out = {w.embed.get(), w.lm_head.get()};
  for (const LayerWeights& l : w.layers)
    for (const Matrix* m : {l.wq.get(), l.wk.get(), l.wv.get(), l.wo.get(), l.w_gate.get(), l.w_up.get(), l.w_down.get()})
      out.push_back(m);
  return out;
}

ModelWeights Load(const fs::path& dir, WeightType type, bool in_place, LoadStats* stats, bool int8 = false) {
  LoadOptions o;
  o.type = type;
  o.in_place = in_place;
  o.int8_layers = int8;
  o.stats = stats;
  absl::StatusOr<ModelWeights> w = LoadModelWeights(dir, o);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : ModelWeights{};
}

void ExpectSameValues(const ModelWeights& a, const ModelWeights& b) {
  const auto ma = Matrices(a), mb = Matrices(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i]->bytes(), mb[i]->bytes());
    EXPECT_EQ(0, std::memcmp(ma[i]->data(), mb[i]->data(), ma[i]->bytes())) << "matrix " << i;
  }
}

struct Case {
  const char* fixture;
  WeightType type;  // the file's own dtype: used in place
};

class ZeroCopyTest : public ::testing::TestWithParam<Case> {};

TEST_P(ZeroCopyTest, InPlaceEqualsCopy) {
  const Case& c = GetParam();
  LoadStats mapped_stats, copy_stats;
  ModelWeights mapped = Load(Fixture(c.fixture), c.type, true, &mapped_stats);
  ModelWeights copied = Load(Fixture(c.fixture), c.type, false, &copy_stats);
  for (const Matrix* m : Matrices(mapped)) EXPECT_TRUE(m->in_place());
  for (const Matrix* m : Matrices(copied)) EXPECT_FALSE(m->in_place());
  EXPECT_EQ(mapped_stats.copied_bytes, 0u);
  EXPECT_GT(mapped_stats.in_place_bytes, 0u);
  EXPECT_EQ(copy_stats.in_place_bytes, 0u);
  EXPECT_EQ(mapped_stats.misaligned, 0);
  ExpectSameValues(mapped, copied);
  // The mapping outlives the ModelWeights that made it as long as a matrix is held.
  std::shared_ptr<const Matrix> head = mapped.lm_head;
  mapped = ModelWeights{};
  EXPECT_EQ(head->At(1, 2), copied.lm_head->At(1, 2));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ZeroCopyTest,
                         ::testing::Values(Case{"bf16", WeightType::kBF16}, Case{"llama3_rope", WeightType::kBF16},
                                           Case{"gqa_tied", WeightType::kF32}, Case{"mha_untied", WeightType::kF32}));

// Conversions (f32 file as bf16, f16 shards) and int8 layers copy.
TEST(ZeroCopy, ConversionsCopy) {
  LoadStats stats;
  ModelWeights w = Load(Fixture("gqa_tied"), WeightType::kBF16, true, &stats);
  for (const Matrix* m : Matrices(w)) EXPECT_FALSE(m->in_place());
  EXPECT_EQ(stats.in_place_bytes, 0u);
  ModelWeights h = Load(Fixture("sharded"), WeightType::kF32, true, &stats);
  EXPECT_EQ(stats.in_place_bytes, 0u);
  ModelWeights q = Load(Fixture("bf16"), WeightType::kBF16, true, &stats, /*int8=*/true);
  EXPECT_TRUE(q.embed->in_place());  // the embedding and head stay bf16, in place
  EXPECT_EQ(q.layers[0].wq->type(), WeightType::kInt8);
  EXPECT_FALSE(q.layers[0].wq->in_place());
  EXPECT_GT(stats.copied_bytes, 0u);
}

// A checkpoint whose tensor data starts at an odd offset (the header padded by one space): bf16 elements
// are not 2-byte aligned, so every matrix is copied (and counted), with the same values.
TEST(ZeroCopy, MisalignedDataIsCopied) {
  const fs::path tmp = fs::temp_directory_path() / ("layerskip_misaligned_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  fs::copy_file(Fixture("bf16") / "config.json", tmp / "config.json", fs::copy_options::overwrite_existing);
  std::ifstream in(Fixture("bf16") / "model.safetensors", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  ASSERT_EQ((8 + n) % 2, 0u);
  const uint64_t n2 = n + 1;
  std::ofstream out(tmp / "model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n2), 8);
  out.write(file.data() + 8, static_cast<std::streamsize>(n));
  out.put(' ');
  out.write(file.data() + 8 + n, static_cast<std::streamsize>(file.size() - 8 - n));
  out.close();
  LoadStats stats, ref_stats;
  ModelWeights w = Load(tmp, WeightType::kBF16, true, &stats);
  ModelWeights ref = Load(Fixture("bf16"), WeightType::kBF16, true, &ref_stats);
  EXPECT_GT(stats.misaligned, 0);
  EXPECT_EQ(stats.in_place_bytes, 0u);
  for (const Matrix* m : Matrices(w)) EXPECT_FALSE(m->in_place());
  ExpectSameValues(w, ref);
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace layerskip
