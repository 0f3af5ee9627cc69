// LoadTokenizer: error statuses for missing / malformed files, BOS/EOS configuration, and encode speed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace layerskip {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = fs::path(LAYERSKIP_SOURCE_DIR) / "tests/fixtures/tokenizers";

// A fresh temporary directory per test, removed afterwards.
class TokenizerLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("layerskip_tok_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& content) { std::ofstream(dir_ / name) << content; }
  void CopyFixture(const std::string& kind) {
    for (const auto& entry : fs::directory_iterator(kFixtures / kind)) {
      fs::copy_file(entry.path(), dir_ / entry.path().filename(), fs::copy_options::overwrite_existing);
    }
  }
  fs::path dir_;
};

// Minimal byte-level BPE tokenizer.json with the given model JSON.
std::string MiniJson(const std::string& model, const std::string& normalizer = "null") {
  return R"({"normalizer": )" + normalizer + R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
    "use_regex": true}, "decoder": {"type": "ByteLevel"}, "added_tokens": [], "model": )" + model + "}";
}

TEST_F(TokenizerLoadTest, MissingDirectoryIsNotFound) {
  auto t = LoadTokenizer(dir_ / "does_not_exist");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("does_not_exist"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, EmptyDirectoryIsNotFound) {
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, MalformedJsonNamesFile) {
  Write("tokenizer.json", "{ \"model\": [1, 2");
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, MissingModelNamesField) {
  Write("tokenizer.json", "{}");
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("model"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, BadMergeNamesIndex) {
  Write("tokenizer.json", MiniJson(R"({"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]})"));
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("merges[0]"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, WrongFieldTypeNamesFile) {
  Write("tokenizer.json", MiniJson(R"({"type": "BPE", "vocab": {"a": "zero"}, "merges": []})"));
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("vocab"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, UnsupportedNormalizerNamesType) {
  Write("tokenizer.json", MiniJson(R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})", R"({"type": "NFKD"})"));
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("normalizer"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("NFKD"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, MiniTokenizerWorks) {
  Write("tokenizer.json", MiniJson(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3},
                                       "merges": [["a", "b"]]})"));
  auto t = LoadTokenizer(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode("ab ab"), (std::vector<int>{2, 3, 2}));
  EXPECT_EQ((*t)->Decode({2, 3, 2}), "ab ab");
  EXPECT_EQ((*t)->Decode({2, 99, -1}), "ab");  // unknown ids decode to ""
  EXPECT_EQ((*t)->vocab_size(), 4);
}

TEST_F(TokenizerLoadTest, MalformedTokenizerConfigNamesFile) {
  CopyFixture("llama2");
  Write("tokenizer_config.json", "{\"add_bos_token\": \"yes\"}");
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer_config.json"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("add_bos_token"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, CorruptSentencePieceModelNamesFile) {
  Write("tokenizer.model", "this is not a protobuf");
  auto t = LoadTokenizer(dir_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer.model"), std::string::npos) << t.status();
}

TEST_F(TokenizerLoadTest, BosAndEosFromConfig) {
  for (const char* kind : {"llama3", "gpt2", "llama2", "llama2_metaspace", "sentencepiece"}) {
    auto t = LoadTokenizer(kFixtures / kind);
    ASSERT_TRUE(t.ok()) << kind << ": " << t.status();
    const bool llama3 = std::string(kind) == "llama3";
    const bool gpt2 = std::string(kind) == "gpt2";
    const std::string bos = llama3 ? "<|begin_of_text|>" : gpt2 ? "<|end_of_text|>" : "<s>";
    const std::string eos = llama3 || gpt2 ? "<|end_of_text|>" : "</s>";
    EXPECT_EQ((*t)->bos_id(), (*t)->TokenToId(bos)) << kind;
    ASSERT_TRUE((*t)->bos_id().has_value()) << kind;
    EXPECT_EQ((*t)->eos_ids(), std::vector<int>{*(*t)->TokenToId(eos)}) << kind;
    EXPECT_FALSE((*t)->TokenToId("no such token, surely").has_value()) << kind;
    EXPECT_GE((*t)->vocab_size(), 1000) << kind;
    // BOS first with special tokens, except gpt2 (no post-processor, no add_bos_token).
    const std::vector<int> ids = (*t)->Encode("hello", true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0] == *(*t)->bos_id(), !gpt2) << kind;
  }
}

TEST_F(TokenizerLoadTest, AddBosAndEosTokenOverridePostProcessor) {
  CopyFixture("llama2");
  Write("tokenizer_config.json",
        R"({"add_bos_token": false, "add_eos_token": true, "bos_token": "<s>", "eos_token": "</s>"})");
  auto t = LoadTokenizer(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<int> plain = (*t)->Encode("hello", false);
  std::vector<int> want = plain;
  want.push_back(2);
  EXPECT_EQ((*t)->Encode("hello", true), want);
}

TEST_F(TokenizerLoadTest, SentencePieceAddEosToken) {
  CopyFixture("sentencepiece");
  Write("tokenizer_config.json", R"({"add_bos_token": true, "add_eos_token": true})");
  auto t = LoadTokenizer(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<int> ids = (*t)->Encode("hello", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
}

TEST_F(TokenizerLoadTest, EosIdsFromGenerationConfig) {
  CopyFixture("llama3");
  Write("generation_config.json", R"({"bos_token_id": 1000, "eos_token_id": [1001, 1002]})");
  auto t = LoadTokenizer(dir_);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->eos_ids(), (std::vector<int>{1001, 1002}));
  EXPECT_EQ((*t)->bos_id(), 1000);
}

TEST_F(TokenizerLoadTest, InvalidUtf8InputDoesNotCrash) {
  for (const char* kind : {"llama3", "llama2", "sentencepiece"}) {
    auto t = LoadTokenizer(kFixtures / kind);
    ASSERT_TRUE(t.ok()) << t.status();
    const std::string bad = "ok \xff\xfe \xe4\xb8 end";
    EXPECT_FALSE((*t)->Encode(bad, false).empty()) << kind;
  }
}

// 100 KB of varied text (random words over a mixed alphabet, so the per-word cache barely helps) must
// encode in well under a second.
TEST_F(TokenizerLoadTest, Encodes100KBQuickly) {
  const std::vector<std::string> alphabet = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n",
                                             "o", "p", "r", "s", "t", "u", "é", "ß", "日", "本", "😀", "1", "2",
                                             "(", ")", ".", ",", "'", "\n"};
  std::mt19937 rng(7);
  std::string text;
  while (text.size() < 100 * 1024) {
    const int len = 1 + rng() % 12;
    for (int i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    text += rng() % 5 == 0 ? "  " : " ";
  }
  for (const char* kind : {"llama3", "gpt2", "llama2", "llama2_metaspace", "sentencepiece"}) {
    auto t = LoadTokenizer(kFixtures / kind);
    ASSERT_TRUE(t.ok()) << t.status();
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> ids = (*t)->Encode(text, false);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 1.0) << kind;
    EXPECT_EQ((*t)->Decode(ids), text) << kind;
    std::printf("%s: %zu bytes -> %zu ids in %.3f s\n", kind, text.size(), ids.size(), seconds);
  }
}

}  // namespace
}  // namespace layerskip
