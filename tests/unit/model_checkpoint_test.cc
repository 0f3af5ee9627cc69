// Tests for LoadModelWeights (engine/model/weights.h): tiny Llama checkpoints written at runtime into a temp
// dir, in F32/F16/BF16, single-file and sharded, tied and untied, full and layer-range loads, and errors.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/model/checkpoint_limits.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "engine/util/bf16.h"

namespace layerskip {
namespace {

using nlohmann::json;

// Tiny model: V=16, D=8, F=12, L=3, H=2, KV=1, hd=4 (q/o [8,8], k/v [4,8]).
json TinyConfig(bool tied) {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", 16}, {"hidden_size", 8},
          {"intermediate_size", 12}, {"num_hidden_layers", 3}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
          {"head_dim", 4}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", tied},
          {"torch_dtype", "bfloat16"}};
}

// Every expected tensor name and shape of the tiny model.
std::map<std::string, std::vector<int64_t>> TinyShapes(bool with_lm_head) {
  std::map<std::string, std::vector<int64_t>> s = {{"model.embed_tokens.weight", {16, 8}}, {"model.norm.weight", {8}}};
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s[p + "input_layernorm.weight"] = {8};
    s[p + "post_attention_layernorm.weight"] = {8};
    s[p + "self_attn.q_proj.weight"] = {8, 8};
    s[p + "self_attn.k_proj.weight"] = {4, 8};
    s[p + "self_attn.v_proj.weight"] = {4, 8};
    s[p + "self_attn.o_proj.weight"] = {8, 8};
    s[p + "mlp.gate_proj.weight"] = {12, 8};
    s[p + "mlp.up_proj.weight"] = {12, 8};
    s[p + "mlp.down_proj.weight"] = {8, 12};
  }
  if (with_lm_head) s["lm_head.weight"] = {16, 8};
  return s;
}

// Element i of tensor `name`: multiples of 1/8 in [-1, 1], exact in F32, F16 and BF16.
float Value(const std::string& name, int64_t i) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  return static_cast<float>(static_cast<int64_t>((h + i * 7) % 17) - 8) / 8.0f;
}

// f32 -> f16 bits for normal values and zero (all test values are exactly representable).
uint16_t F32ToF16Exact(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  if ((u & 0x7fffffffu) == 0) return static_cast<uint16_t>(sign);
  int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | ((u >> 13) & 0x3ffu));
}

std::string Encode(const std::vector<float>& v, const std::string& dtype) {
  std::string out;
  for (float f : v) {
    if (dtype == "F32") {
      out.append(reinterpret_cast<const char*>(&f), 4);
    } else {
      uint16_t h = dtype == "F16" ? F32ToF16Exact(f) : F32ToBf16(f);
      out.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  return out;
}

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// The tiny writer: header JSON ({"dtype","shape","data_offsets"}) + data, to `path`.
void WriteSafetensors(const std::filesystem::path& path, const std::vector<Tensor>& tensors) {
  json header = {{"__metadata__", {{"format", "pt"}}}};
  std::string data;
  for (const Tensor& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string h = header.dump();
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary) << len << h << data;
}

Tensor MakeTensor(const std::string& name, const std::vector<int64_t>& shape, const std::string& dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = Value(name, i);
  return {name, dtype, shape, Encode(v, dtype)};
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("ls_checkpoint_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteConfig(const json& config) { std::ofstream(dir_ / "config.json") << config.dump(2); }

  // All tensors of the tiny model in `dtype`, minus `skip`, with `override_shape` applied.
  std::vector<Tensor> Tensors(bool with_lm_head, const std::string& dtype, const std::string& skip = "",
                              const std::map<std::string, std::vector<int64_t>>& override_shape = {}) {
    std::vector<Tensor> out;
    for (auto [name, shape] : TinyShapes(with_lm_head)) {
      if (name == skip) continue;
      if (auto it = override_shape.find(name); it != override_shape.end()) shape = it->second;
      out.push_back(MakeTensor(name, shape, dtype));
    }
    return out;
  }

  void WriteModel(bool tied, const std::string& dtype) {
    WriteConfig(TinyConfig(tied));
    WriteSafetensors(dir_ / "model.safetensors", Tensors(!tied, dtype));
  }

  std::filesystem::path dir_;
};

// Every element of `m` equals Value(name, i) (exact: test values are representable in bf16).
void ExpectMatrix(const Matrix* m, const std::string& name, int64_t rows, int64_t cols, WeightType type) {
  ASSERT_NE(m, nullptr) << name;
  EXPECT_EQ(m->type(), type);
  ASSERT_EQ(m->rows(), rows) << name;
  ASSERT_EQ(m->cols(), cols) << name;
  // Owned buffers are 64-byte aligned; matrices used in place from the map are aligned to their element size.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m->data()) % (m->in_place() ? (type == WeightType::kBF16 ? 2 : 4) : 64), 0u);
  for (int64_t i = 0; i < rows * cols; ++i) {
    ASSERT_EQ(m->At(i / cols, i % cols), Value(name, i)) << name << " element " << i;
  }
}

void ExpectNorm(const std::vector<float>& v, const std::string& name, size_t n) {
  ASSERT_EQ(v.size(), n) << name;
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], Value(name, static_cast<int64_t>(i))) << name;
}

void ExpectLayer(const ModelWeights& w, int l) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const LayerWeights& lw = w.layer(l);
  ExpectNorm(lw.attn_norm, p + "input_layernorm.weight", 8);
  ExpectNorm(lw.mlp_norm, p + "post_attention_layernorm.weight", 8);
  ExpectMatrix(lw.wq.get(), p + "self_attn.q_proj.weight", 8, 8, w.type);
  ExpectMatrix(lw.wk.get(), p + "self_attn.k_proj.weight", 4, 8, w.type);
  ExpectMatrix(lw.wv.get(), p + "self_attn.v_proj.weight", 4, 8, w.type);
  ExpectMatrix(lw.wo.get(), p + "self_attn.o_proj.weight", 8, 8, w.type);
  ExpectMatrix(lw.w_gate.get(), p + "mlp.gate_proj.weight", 12, 8, w.type);
  ExpectMatrix(lw.w_up.get(), p + "mlp.up_proj.weight", 12, 8, w.type);
  ExpectMatrix(lw.w_down.get(), p + "mlp.down_proj.weight", 8, 12, w.type);
}

void ExpectError(const absl::Status& s, absl::StatusCode code, const std::vector<std::string>& needles) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), code) << s;
  for (const std::string& n : needles) EXPECT_NE(s.message().find(n), std::string::npos) << "missing '" << n << "' in " << s;
}

struct DtypeCase {
  const char* file_dtype;
  WeightType type;
};
class CheckpointDtypeTest : public CheckpointTest, public ::testing::WithParamInterface<DtypeCase> {};

TEST_P(CheckpointDtypeTest, LoadsWholeModel) {
  WriteModel(/*tied=*/false, GetParam().file_dtype);
  LoadOptions opt;
  opt.type = GetParam().type;
  auto w = LoadModelWeights(dir_, opt);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->type, opt.type);
  EXPECT_EQ(w->config.num_hidden_layers, 3);
  EXPECT_EQ(w->first_layer, 0);
  EXPECT_EQ(w->end_layer, 3);
  ASSERT_EQ(w->layers.size(), 3u);
  ExpectMatrix(w->embed.get(), "model.embed_tokens.weight", 16, 8, opt.type);
  ExpectMatrix(w->lm_head.get(), "lm_head.weight", 16, 8, opt.type);
  EXPECT_NE(w->embed.get(), w->lm_head.get());
  ExpectNorm(w->final_norm, "model.norm.weight", 8);
  for (int l = 0; l < 3; ++l) ExpectLayer(*w, l);
  const size_t es = opt.type == WeightType::kBF16 ? 2 : 4;
  const size_t matrices = 2 * 16 * 8 + 3 * (8 * 8 * 2 + 4 * 8 * 2 + 12 * 8 * 3);
  EXPECT_EQ(w->bytes(), matrices * es + (3 * 2 + 1) * 8 * 4);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CheckpointDtypeTest,
                         ::testing::Values(DtypeCase{"F32", WeightType::kBF16}, DtypeCase{"F16", WeightType::kBF16},
                                           DtypeCase{"BF16", WeightType::kBF16}, DtypeCase{"F32", WeightType::kF32},
                                           DtypeCase{"F16", WeightType::kF32}, DtypeCase{"BF16", WeightType::kF32}),
                         [](const auto& info) {
                           return std::string(info.param.file_dtype) + "_to_" + WeightTypeName(info.param.type);
                         });

TEST_F(CheckpointTest, Bf16RoundsToNearestEven) {
  WriteConfig(TinyConfig(true));
  std::vector<Tensor> t = Tensors(false, "F32");
  // Element 0 of the embedding: 1 + 2^-8 (halfway; even -> 1.0); element 1: 1 + 3*2^-8 (-> 1 + 2^-6);
  // element 2: 1 + 2^-8 + 2^-20 (above halfway -> 1 + 2^-7).
  const float vals[3] = {1.00390625f, 1.01171875f, 1.00390625f + 0x1p-20f};
  for (Tensor& x : t) {
    if (x.name == "model.embed_tokens.weight") std::memcpy(x.bytes.data(), vals, sizeof(vals));
  }
  WriteSafetensors(dir_ / "model.safetensors", t);
  auto w = LoadModelWeights(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->embed->bf16()[0], 0x3f80);
  EXPECT_EQ(w->embed->bf16()[1], 0x3f82);
  EXPECT_EQ(w->embed->bf16()[2], 0x3f81);
  LoadOptions f32;
  f32.type = WeightType::kF32;
  w = LoadModelWeights(dir_, f32);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->embed->f32()[1], vals[1]);  // f32 is exact
}

TEST_F(CheckpointTest, LoadsShardedCheckpoint) {
  WriteConfig(TinyConfig(false));
  std::vector<Tensor> all = Tensors(true, "BF16");
  std::vector<Tensor> shard[2];
  json weight_map = json::object();
  for (size_t i = 0; i < all.size(); ++i) {
    const char* file = i % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    weight_map[all[i].name] = file;
    shard[i % 2].push_back(all[i]);
  }
  WriteSafetensors(dir_ / "model-00001-of-00002.safetensors", shard[0]);
  WriteSafetensors(dir_ / "model-00002-of-00002.safetensors", shard[1]);
  std::ofstream(dir_ / "model.safetensors.index.json") << json({{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}).dump();
  auto w = LoadModelWeights(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectMatrix(w->embed.get(), "model.embed_tokens.weight", 16, 8, WeightType::kBF16);
  ExpectMatrix(w->lm_head.get(), "lm_head.weight", 16, 8, WeightType::kBF16);
  for (int l = 0; l < 3; ++l) ExpectLayer(*w, l);

  // Shape errors name the shard that holds the tensor.
  std::vector<Tensor> bad = shard[1];
  bad[0] = MakeTensor(bad[0].name, {3, 3}, "BF16");
  WriteSafetensors(dir_ / "model-00002-of-00002.safetensors", bad);
  auto r = LoadModelWeights(dir_);
  ExpectError(r.status(), absl::StatusCode::kInvalidArgument, {bad[0].name, "model-00002-of-00002.safetensors", "[3, 3]"});
}

TEST_F(CheckpointTest, TiedEmbeddingsShareTheMatrix) {
  WriteModel(/*tied=*/true, "BF16");
  auto w = LoadModelWeights(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_NE(w->embed, nullptr);
  EXPECT_EQ(w->embed.get(), w->lm_head.get());
  EXPECT_EQ(w->bytes(), 16u * 8 * 2 + 3 * (8 * 8 * 2 + 4 * 8 * 2 + 12 * 8 * 3) * 2 + 7 * 8 * 4);  // tied counted once

  // A last pipeline stage: head only, tied -> the head is the embedding matrix, no embedding loaded.
  LoadOptions last;
  last.first_layer = 2;
  last.embedding = false;
  auto tail = LoadModelWeights(dir_, last);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(tail->embed, nullptr);
  ExpectMatrix(tail->lm_head.get(), "model.embed_tokens.weight", 16, 8, WeightType::kBF16);
  ASSERT_EQ(tail->layers.size(), 1u);
  EXPECT_TRUE(tail->has_layer(2));
  EXPECT_FALSE(tail->has_layer(1));
  ExpectLayer(*tail, 2);
}

TEST_F(CheckpointTest, TiedCheckpointWithRedundantLmHeadUsesEmbedding) {
  WriteConfig(TinyConfig(true));
  WriteSafetensors(dir_ / "model.safetensors", Tensors(true, "F32"));
  auto w = LoadModelWeights(dir_);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->embed.get(), w->lm_head.get());
}

TEST_F(CheckpointTest, UntiedMissingLmHead) {
  WriteConfig(TinyConfig(false));
  WriteSafetensors(dir_ / "model.safetensors", Tensors(false, "F32"));
  auto w = LoadModelWeights(dir_);
  ExpectError(w.status(), absl::StatusCode::kNotFound, {"lm_head.weight", dir_.string()});
  LoadOptions no_head;  // without the head the checkpoint is fine
  no_head.head = false;
  auto ok = LoadModelWeights(dir_, no_head);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->lm_head, nullptr);
  EXPECT_TRUE(ok->final_norm.empty());
}

TEST_F(CheckpointTest, LayerRange) {
  WriteConfig(TinyConfig(false));
  // Layer 0 is absent from the file: a stage that does not load it must not need it.
  std::vector<Tensor> t;
  for (Tensor& x : Tensors(true, "F16")) {
    if (x.name.rfind("model.layers.0.", 0) != 0) t.push_back(std::move(x));
  }
  WriteSafetensors(dir_ / "model.safetensors", t);
  LoadOptions mid;
  mid.first_layer = 1;
  mid.end_layer = 3;
  mid.embedding = false;
  mid.head = false;
  auto w = LoadModelWeights(dir_, mid);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->first_layer, 1);
  EXPECT_EQ(w->end_layer, 3);
  ASSERT_EQ(w->layers.size(), 2u);
  EXPECT_EQ(w->embed, nullptr);
  EXPECT_EQ(w->lm_head, nullptr);
  EXPECT_TRUE(w->final_norm.empty());
  ExpectLayer(*w, 1);
  ExpectLayer(*w, 2);

  LoadOptions empty;  // an empty range with the embedding only
  empty.first_layer = 1;
  empty.end_layer = 1;
  empty.head = false;
  auto e = LoadModelWeights(dir_, empty);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->layers.empty());
  ASSERT_NE(e->embed, nullptr);

  auto all = LoadModelWeights(dir_);  // layer 0 is needed now
  ExpectError(all.status(), absl::StatusCode::kNotFound, {"model.layers.0.input_layernorm.weight"});

  for (auto [first, end] : {std::pair{2, 1}, std::pair{0, 4}, std::pair{-1, 2}, std::pair{4, -1}}) {
    LoadOptions bad;
    bad.first_layer = first;
    bad.end_layer = end;
    ExpectError(LoadModelWeights(dir_, bad).status(), absl::StatusCode::kInvalidArgument, {"layer range", "config.json"});
  }
}

TEST_F(CheckpointTest, ShapeMismatchNamesTensorFileAndShapes) {
  WriteConfig(TinyConfig(true));
  WriteSafetensors(dir_ / "model.safetensors",
                   Tensors(false, "BF16", "", {{"model.layers.1.self_attn.k_proj.weight", {8, 8}}}));
  auto w = LoadModelWeights(dir_);
  ExpectError(w.status(), absl::StatusCode::kInvalidArgument,
              {"model.layers.1.self_attn.k_proj.weight", (dir_ / "model.safetensors").string(), "[4, 8]", "[8, 8]"});

  // config.json disagreeing with the tensors (hidden_size 16 vs 8).
  json c = TinyConfig(true);
  c["hidden_size"] = 16;
  c["head_dim"] = 8;
  WriteConfig(c);
  WriteSafetensors(dir_ / "model.safetensors", Tensors(false, "BF16"));
  w = LoadModelWeights(dir_);
  ExpectError(w.status(), absl::StatusCode::kInvalidArgument, {"model.embed_tokens.weight", "[16, 16]", "[16, 8]"});
}

TEST_F(CheckpointTest, MissingTensor) {
  WriteConfig(TinyConfig(true));
  WriteSafetensors(dir_ / "model.safetensors", Tensors(false, "BF16", "model.layers.2.mlp.up_proj.weight"));
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kNotFound,
              {"model.layers.2.mlp.up_proj.weight", dir_.string()});
  WriteSafetensors(dir_ / "model.safetensors", Tensors(false, "BF16", "model.norm.weight"));
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kNotFound, {"model.norm.weight"});
}

TEST_F(CheckpointTest, MissingFiles) {
  auto no_config = LoadModelWeights(dir_);
  ExpectError(no_config.status(), absl::StatusCode::kNotFound, {"config.json"});
  WriteConfig(TinyConfig(true));
  auto no_weights = LoadModelWeights(dir_);
  ExpectError(no_weights.status(), absl::StatusCode::kNotFound,
              {"no model.safetensors or model.safetensors.index.json in", dir_.string()});
  auto no_dir = LoadModelWeights(dir_ / "does_not_exist");
  ExpectError(no_dir.status(), absl::StatusCode::kNotFound, {"does_not_exist"});
}

TEST_F(CheckpointTest, TruncatedAndCorruptFiles) {
  WriteModel(true, "BF16");
  const auto path = dir_ / "model.safetensors";
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kInvalidArgument, {path.string(), "outside the data area"});
  WriteSafetensors(path, {{"model.embed_tokens.weight", "I8", {16, 8}, std::string(128, '\1')}});
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kUnimplemented, {path.string(), "I8", "model.embed_tokens.weight"});
}

TEST_F(CheckpointTest, BadConfig) {
  json c = TinyConfig(false);
  c["architectures"] = {"GPT2LMHeadModel"};
  WriteConfig(c);
  WriteSafetensors(dir_ / "model.safetensors", Tensors(true, "BF16"));
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kUnimplemented,
              {"config.json", "unsupported architecture GPT2LMHeadModel"});
  c = TinyConfig(false);
  c["num_attention_heads"] = "two";
  WriteConfig(c);
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kInvalidArgument,
              {(dir_ / "config.json").string(), "field 'num_attention_heads'"});
}

// config.json promising far more layers than the files hold: one clear error before any allocation
// (it used to end in std::bad_alloc resizing the layer vector).
TEST_F(CheckpointTest, LayerCountBeyondTheTensorsPresent) {
  json c = TinyConfig(true);
  c["num_hidden_layers"] = 1000000000;
  WriteConfig(c);
  WriteSafetensors(dir_ / "model.safetensors", Tensors(false, "BF16"));
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kInvalidArgument,
              {"config.json", "num_hidden_layers is 1000000000", "tensors for 3 layers"});
  c["num_hidden_layers"] = 4;  // one more than present
  WriteConfig(c);
  ExpectError(LoadModelWeights(dir_).status(), absl::StatusCode::kInvalidArgument, {"num_hidden_layers is 4", "3 layers"});
  auto files = CheckpointFiles::Open(dir_);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(LayersPresent(**files), 3);
}

TEST_F(CheckpointTest, LoadBytesAndMemoryLimit) {
  const LlamaConfig c = *ParseLlamaConfig(TinyConfig(true).dump());
  const auto tensors = ExpectedTensors(c, LoadOptions{}, 0, 3);
  ASSERT_EQ(tensors.size(), 1u + 9 * 3 + 1);  // tied: embed, 9 per layer, final norm
  // Matrices: embed 16x8 + per layer (8x8 + 4x8 + 4x8 + 8x8 + 3 * 12x8) = 128 + 3 * 480; norms: 7 x 8 f32.
  const int64_t matrix_elems = 128 + 3 * 480, norm_elems = 7 * 8;
  EXPECT_EQ(LoadBytes(tensors, WeightType::kBF16), matrix_elems * 2 + norm_elems * 4);
  EXPECT_EQ(LoadBytes(tensors, WeightType::kF32), (matrix_elems + norm_elems) * 4);
  EXPECT_TRUE(CheckFitsInMemory(100, 100, "x").ok());
  EXPECT_TRUE(CheckFitsInMemory(100, -1, "x").ok());  // unknown: no check
  ExpectError(CheckFitsInMemory(int64_t{3} << 30, int64_t{1} << 30, "loading the model"),
              absl::StatusCode::kResourceExhausted, {"loading the model needs 3.00 GiB", "only 1.00 GiB"});
  EXPECT_GT(AvailableMemoryBytes(), 0);  // /proc/meminfo is there on Linux
}

}  // namespace
}  // namespace layerskip
