// IncrementalDecoder: feeding ids one at a time yields text whose concatenation equals Decode(all ids),
// and incomplete UTF-8 (byte-level bytes, <0xXX> pieces) is held back rather than emitted as U+FFFD.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/tokenizer/tokenizer.h"

namespace layerskip {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(LAYERSKIP_SOURCE_DIR) / "tests/fixtures/tokenizers";

class IncrementalDecoderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(IncrementalDecoderTest, ConcatenationEqualsDecode) {
  auto tokenizer = LoadTokenizer(kFixtures / GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& tok = **tokenizer;
  std::ifstream in(kFixtures / GetParam() / "expected.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const nlohmann::json cases = nlohmann::json::parse(buffer.str());
  for (bool skip : {false, true}) {
    for (const auto& c : cases) {
      const auto ids = c["ids"].get<std::vector<int>>();
      IncrementalDecoder decoder(tok, skip);
      std::string streamed;
      for (int id : ids) streamed += decoder.Feed(id);
      streamed += decoder.Flush();
      EXPECT_EQ(streamed, tok.Decode(ids, skip)) << "text " << nlohmann::json(c["text"]).dump();
    }
  }
}

TEST_P(IncrementalDecoderTest, HoldsBackPartialCharacters) {
  auto tokenizer = LoadTokenizer(kFixtures / GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& tok = **tokenizer;
  // Rare characters are split into byte tokens by all the fixtures (byte-level or byte fallback).
  const std::string text = "x 𝔘𝔫𝔦 ☃ y";
  const std::vector<int> ids = tok.Encode(text, false);
  IncrementalDecoder decoder(tok);
  std::string streamed;
  for (int id : ids) {
    const std::string piece = decoder.Feed(id);
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "emitted a replacement character";
    streamed += piece;
  }
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, text);
}

TEST_P(IncrementalDecoderTest, FlushEmitsTrailingIncompleteBytes) {
  auto tokenizer = LoadTokenizer(kFixtures / GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& tok = **tokenizer;
  std::vector<int> ids = tok.Encode("ab 𝔘", false);
  ids.pop_back();  // drop the last byte of the 4-byte character
  IncrementalDecoder decoder(tok);
  std::string streamed;
  for (int id : ids) streamed += decoder.Feed(id);
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, tok.Decode(ids));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, IncrementalDecoderTest,
                         ::testing::Values("llama3", "gpt2", "llama2", "llama2_metaspace", "sentencepiece"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace layerskip
