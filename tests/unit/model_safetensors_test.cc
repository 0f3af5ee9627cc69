// Tests for the safetensors reader (engine/model/safetensors.h): parsing, mmap'ed files, sharded checkpoints,
// and every malformed-input path (each checks the status code and that the message names the file).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/model/safetensors.h"

namespace layerskip {
namespace {

using nlohmann::json;

// Serialises a safetensors file: 8-byte LE header length, header JSON, data.
std::string Safetensors(const json& header, const std::string& data) {
  std::string h = header.dump();
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h + data;
}

std::string F32Bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

absl::StatusOr<std::vector<TensorView>> ParseString(const std::string& s) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "some/model.safetensors");
}

void ExpectError(const absl::Status& s, absl::StatusCode code, const std::string& file, const std::string& needle) {
  ASSERT_FALSE(s.ok()) << "expected an error mentioning " << needle;
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(file), std::string::npos) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos) << s;
}
void ExpectParseError(const std::string& bytes, absl::StatusCode code, const std::string& needle) {
  auto r = ParseString(bytes);
  ExpectError(r.status(), code, "some/model.safetensors", needle);
}

json Entry(const char* dtype, std::vector<int64_t> shape, uint64_t begin, uint64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("ls_safetensors_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  void Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path_ / name, std::ios::binary) << bytes;
  }

 private:
  std::filesystem::path path_;
};

TEST(ModelSafetensors, ParsesAllDtypesAndMetadata) {
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"w32", Entry("F32", {2, 2}, 0, 16)},
            {"w16", Entry("F16", {3}, 16, 22)},
            {"wbf", Entry("BF16", {1, 2}, 22, 26)},
            {"empty", Entry("F32", {0, 7}, 26, 26)},
            {"scalar", Entry("F32", {}, 26, 30)}};
  std::string data = F32Bytes({1, 2, 3, 4}) + std::string(10, '\x11') + F32Bytes({5});
  std::string file = Safetensors(h, data);
  auto r = ParseString(file);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  const uint8_t* base = reinterpret_cast<const uint8_t*>(file.data()) + file.size() - data.size();
  for (const TensorView& t : *r) {
    if (t.name == "w32") {
      EXPECT_EQ(t.dtype, DType::kF32);
      EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 2}));
      EXPECT_EQ(t.numel(), 4);
      EXPECT_EQ(t.nbytes, 16u);
      EXPECT_EQ(t.data, base);
      float f;
      std::memcpy(&f, t.data + 12, 4);
      EXPECT_EQ(f, 4.0f);
    } else if (t.name == "w16") {
      EXPECT_EQ(t.dtype, DType::kF16);
      EXPECT_EQ(t.data, base + 16);
      EXPECT_EQ(t.nbytes, 6u);
    } else if (t.name == "wbf") {
      EXPECT_EQ(t.dtype, DType::kBF16);
      EXPECT_EQ(t.data, base + 22);
    } else if (t.name == "empty") {
      EXPECT_EQ(t.numel(), 0);
      EXPECT_EQ(t.nbytes, 0u);
    } else {
      EXPECT_EQ(t.name, "scalar");
      EXPECT_EQ(t.numel(), 1);
    }
  }
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  // An empty header is a valid file with no tensors; so is trailing space padding in the header.
  auto empty = ParseString(Safetensors(json::object(), ""));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

TEST(ModelSafetensors, RejectsBadHeaders) {
  using C = absl::StatusCode;
  ExpectParseError("", C::kInvalidArgument, "too small");
  ExpectParseError("\x02\0\0", C::kInvalidArgument, "too small");
  std::string past_eof = std::string("\x40\0\0\0\0\0\0\0", 8) + "{}";  // says 64 header bytes, has 2
  ExpectParseError(past_eof, C::kInvalidArgument, "header length 64");
  std::string huge = std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8) + "{}";  // 2^64 - 1: no overflow
  ExpectParseError(huge, C::kInvalidArgument, "header length");
  std::string bad_json = std::string("\x05\0\0\0\0\0\0\0", 8) + "{\"a\":";
  ExpectParseError(bad_json, C::kInvalidArgument, "malformed JSON");
  ExpectParseError(Safetensors(json::array({1, 2}), ""), C::kInvalidArgument, "not a JSON object");
  ExpectParseError(Safetensors({{"__metadata__", {{"k", 1}}}}, ""), C::kInvalidArgument, "__metadata__");
  ExpectParseError(Safetensors({{"__metadata__", "x"}}, ""), C::kInvalidArgument, "__metadata__");
  ExpectParseError(Safetensors({{"w", 3}}, ""), C::kInvalidArgument, "tensor 'w'");
}

TEST(ModelSafetensors, RejectsBadEntries) {
  using C = absl::StatusCode;
  const std::string data = F32Bytes({1, 2, 3, 4});
  auto one = [&](const json& entry) { return Safetensors({{"layer.w", entry}}, data); };
  // data_offsets out of range, reversed, wrong length, malformed.
  ExpectParseError(one(Entry("F32", {4}, 0, 20)), C::kInvalidArgument, "outside the data area");
  ExpectParseError(one(Entry("F32", {1}, 8, 4)), C::kInvalidArgument, "outside the data area");
  ExpectParseError(one(Entry("F32", {2}, 0, 16)), C::kInvalidArgument, "span 16 bytes");
  ExpectParseError(one(Entry("F32", {4}, 0, 12)), C::kInvalidArgument, "tensor 'layer.w'");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0}}}), C::kInvalidArgument, "data_offsets");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {-16, 0}}}), C::kInvalidArgument, "data_offsets");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {4}}}), C::kInvalidArgument, "data_offsets");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0.0, 16.0}}}), C::kInvalidArgument, "data_offsets");
  // Shapes: negative, non-integer, not a list, overflowing products.
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {-4}}, {"data_offsets", {0, 16}}}), C::kInvalidArgument, "shape");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", {2.0, 2}}, {"data_offsets", {0, 16}}}), C::kInvalidArgument, "shape");
  ExpectParseError(one({{"dtype", "F32"}, {"shape", "4"}, {"data_offsets", {0, 16}}}), C::kInvalidArgument, "shape");
  ExpectParseError(one(Entry("F32", {int64_t{1} << 62, int64_t{1} << 62}, 0, 16)), C::kInvalidArgument, "shape");
  ExpectParseError(one(Entry("F32", {int64_t{1} << 62, 4}, 0, 16)), C::kInvalidArgument, "tensor 'layer.w'");
  // dtypes: missing, unsupported (Unimplemented naming the tensor and the dtype).
  ExpectParseError(one({{"shape", {4}}, {"data_offsets", {0, 16}}}), C::kInvalidArgument, "dtype");
  auto i8 = ParseString(one(Entry("I8", {16}, 0, 16)));
  ExpectError(i8.status(), C::kUnimplemented, "some/model.safetensors", "tensor 'layer.w'");
  ExpectError(i8.status(), C::kUnimplemented, "some/model.safetensors", "I8");
  auto f64 = ParseString(one(Entry("F64", {2}, 0, 16)));
  ExpectError(f64.status(), C::kUnimplemented, "some/model.safetensors", "F64");
}

TEST(ModelSafetensors, OpensMappedFile) {
  TempDir dir;
  dir.Write("a.safetensors", Safetensors({{"x", Entry("F32", {2, 2}, 0, 16)}, {"y", Entry("BF16", {2}, 16, 20)}},
                                         F32Bytes({1, 2, 3, 4}) + std::string("\x80\x3f\x00\x40", 4)));
  auto f = SafetensorsFile::Open(dir.path() / "a.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 2u);
  EXPECT_EQ((*f)->path(), dir.path() / "a.safetensors");
  const TensorView* x = (*f)->Find("x");
  ASSERT_NE(x, nullptr);
  float v;
  std::memcpy(&v, x->data + 4, 4);
  EXPECT_EQ(v, 2.0f);
  EXPECT_EQ((*f)->Find("z"), nullptr);
}

TEST(ModelSafetensors, FileErrorsNameThePath) {
  TempDir dir;
  const std::string missing = (dir.path() / "nope.safetensors").string();
  auto r = SafetensorsFile::Open(missing);
  ExpectError(r.status(), absl::StatusCode::kNotFound, missing, "not found");

  dir.Write("empty.safetensors", "");
  const std::string empty = (dir.path() / "empty.safetensors").string();
  ExpectError(SafetensorsFile::Open(empty).status(), absl::StatusCode::kInvalidArgument, empty, "too small");

  // Truncated: a valid file cut inside its data area.
  std::string full = Safetensors({{"x", Entry("F32", {4}, 0, 16)}}, F32Bytes({1, 2, 3, 4}));
  dir.Write("cut.safetensors", full.substr(0, full.size() - 5));
  const std::string cut = (dir.path() / "cut.safetensors").string();
  ExpectError(SafetensorsFile::Open(cut).status(), absl::StatusCode::kInvalidArgument, cut, "outside the data area");
  // Truncated inside the header.
  dir.Write("cut2.safetensors", full.substr(0, 12));
  const std::string cut2 = (dir.path() / "cut2.safetensors").string();
  ExpectError(SafetensorsFile::Open(cut2).status(), absl::StatusCode::kInvalidArgument, cut2, "header length");

  ExpectError(SafetensorsFile::Open(dir.path()).status(), absl::StatusCode::kInvalidArgument, dir.path().string(),
              "not a regular file");
}

TEST(ModelSafetensors, CheckpointSingleFile) {
  TempDir dir;
  dir.Write("model.safetensors", Safetensors({{"a", Entry("F32", {1}, 0, 4)}, {"b", Entry("F32", {1}, 4, 8)}}, F32Bytes({1, 2})));
  auto ck = CheckpointFiles::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->All().size(), 2u);
  ASSERT_NE((*ck)->Find("b"), nullptr);
  EXPECT_EQ((*ck)->Find("c"), nullptr);
  EXPECT_EQ((*ck)->FileOf("a"), dir.path() / "model.safetensors");
}

TEST(ModelSafetensors, CheckpointSharded) {
  TempDir dir;
  dir.Write("model-00001-of-00002.safetensors", Safetensors({{"a", Entry("F32", {1}, 0, 4)}}, F32Bytes({1})));
  dir.Write("model-00002-of-00002.safetensors",
            Safetensors({{"b", Entry("F32", {2}, 0, 8)}, {"c", Entry("F32", {1}, 8, 12)}}, F32Bytes({2, 3, 4})));
  json index = {{"metadata", {{"total_size", 16}}},
                {"weight_map",
                 {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"},
                  {"c", "model-00002-of-00002.safetensors"}}}};
  dir.Write("model.safetensors.index.json", index.dump());
  auto ck = CheckpointFiles::Open(dir.path());
  ASSERT_TRUE(ck.ok()) << ck.status();
  EXPECT_EQ((*ck)->All().size(), 3u);
  const TensorView* c = (*ck)->Find("c");
  ASSERT_NE(c, nullptr);
  float v;
  std::memcpy(&v, c->data, 4);
  EXPECT_EQ(v, 4.0f);
  EXPECT_EQ((*ck)->FileOf("a"), dir.path() / "model-00001-of-00002.safetensors");
  EXPECT_EQ((*ck)->FileOf("c"), dir.path() / "model-00002-of-00002.safetensors");
}

TEST(ModelSafetensors, CheckpointErrors) {
  using C = absl::StatusCode;
  TempDir dir;
  auto none = CheckpointFiles::Open(dir.path());
  ExpectError(none.status(), C::kNotFound, dir.path().string(), "no model.safetensors or model.safetensors.index.json in");

  const std::string index = (dir.path() / "model.safetensors.index.json").string();
  dir.Write("shard1.safetensors", Safetensors({{"a", Entry("F32", {1}, 0, 4)}}, F32Bytes({1})));
  // Missing shard -> NotFound naming the shard.
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", "shard1.safetensors"}, {"b", "shard2.safetensors"}}}}).dump());
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kNotFound, index, "shard2.safetensors");
  // Tensor listed in the index but absent from its shard.
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", "shard1.safetensors"}, {"zz", "shard1.safetensors"}}}}).dump());
  auto absent = CheckpointFiles::Open(dir.path());
  ExpectError(absent.status(), C::kNotFound, index, "tensor 'zz'");
  ExpectError(absent.status(), C::kNotFound, index, "shard1.safetensors");
  // Malformed index files.
  dir.Write("model.safetensors.index.json", "{\"weight_map\": ");
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, index, "invalid JSON");
  dir.Write("model.safetensors.index.json", "{\"metadata\": {}}");
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, index, "weight_map");
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", 7}}}}).dump());
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, index, "tensor 'a'");
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", "../shard1.safetensors"}}}}).dump());
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, index, "invalid shard name");
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", "/etc/passwd"}}}}).dump());
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, index, "invalid shard name");
  // A broken shard reports the shard's own path.
  dir.Write("shard1.safetensors", "xx");
  dir.Write("model.safetensors.index.json", json({{"weight_map", {{"a", "shard1.safetensors"}}}}).dump());
  ExpectError(CheckpointFiles::Open(dir.path()).status(), C::kInvalidArgument, (dir.path() / "shard1.safetensors").string(),
              "too small");
}

}  // namespace
}  // namespace layerskip
