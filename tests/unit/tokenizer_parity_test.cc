// Parity with the Hugging Face `tokenizers` library / sentencepiece: every fixture string must encode to the
// reference ids (with and without special tokens) and decode to the reference text.
// Fixtures: tests/fixtures/tokenizers/<kind>/, written by make_tokenizer_fixtures.py.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace layerskip {
namespace {

const std::filesystem::path kFixtures = std::filesystem::path(LAYERSKIP_SOURCE_DIR) / "tests/fixtures/tokenizers";

nlohmann::json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return nlohmann::json::parse(buffer.str());
}

std::string IdsToString(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += std::to_string(id) + " ";
  return s;
}

class TokenizerParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParityTest, MatchesReference) {
  auto tokenizer = LoadTokenizer(kFixtures / GetParam());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& tok = **tokenizer;
  const nlohmann::json cases = ReadJson(kFixtures / GetParam() / "expected.json");
  ASSERT_GT(cases.size(), 200u);
  int failures = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<int>>();
    const auto ids_no_special = c["ids_no_special"].get<std::vector<int>>();
    const std::vector<int> got = tok.Encode(text, true);
    const std::vector<int> got_no_special = tok.Encode(text, false);
    bool ok = got == ids && got_no_special == ids_no_special;
    EXPECT_EQ(got, ids) << "text: " << nlohmann::json(text).dump() << "\n got " << IdsToString(got) << "\nwant "
                        << IdsToString(ids);
    EXPECT_EQ(got_no_special, ids_no_special) << "text: " << nlohmann::json(text).dump();
    const std::string decoded = tok.Decode(ids, false);
    const std::string decoded_skip = tok.Decode(ids, true);
    const std::string decoded_no_special = tok.Decode(ids_no_special, false);
    ok = ok && decoded == c["decoded"] && decoded_skip == c["decoded_skip"] &&
         decoded_no_special == c["decoded_no_special"];
    EXPECT_EQ(decoded, c["decoded"].get<std::string>()) << "ids " << IdsToString(ids);
    EXPECT_EQ(decoded_skip, c["decoded_skip"].get<std::string>()) << "ids " << IdsToString(ids);
    EXPECT_EQ(decoded_no_special, c["decoded_no_special"].get<std::string>()) << "ids " << IdsToString(ids_no_special);
    // Round trip wherever the reference round-trips.
    if (c["decoded_no_special"] == c["text"]) {
      EXPECT_EQ(tok.Decode(tok.Encode(text, false)), text);
    }
    if (!ok && ++failures >= 10) FAIL() << "stopping after 10 failing strings";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerParityTest,
                         ::testing::Values("llama3", "gpt2", "llama2", "llama2_metaspace", "sentencepiece"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace layerskip
