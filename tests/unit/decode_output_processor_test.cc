// OutputProcessor and StopStrings (engine/decode/output_processor.h), on the demo model's real tokenizer:
// streamed text equals the whole completion's text, ends before the first stop string, and never sends a
// tail that could start one before the sequence has ended.
#include <gtest/gtest.h>

#include "engine/decode/output_processor.h"

namespace layerskip {
namespace {

const std::filesystem::path kModel = std::filesystem::path(LAYERSKIP_SOURCE_DIR) / "models/layerskip-demo";

TEST(StopStringsTest, CutsAtTheEarliestAndHoldsBackAPossibleStart) {
  const StopStrings stops({"", "world", "lo w"});
  EXPECT_FALSE(stops.empty());
  EXPECT_EQ(stops.CutAt("hello world"), 3u);  // "lo w" starts before "world"
  EXPECT_EQ(stops.CutAt("nothing here"), 12u);
  EXPECT_TRUE(stops.Found("a world"));
  EXPECT_FALSE(stops.Found("a word"));
  EXPECT_EQ(stops.SafeLength("abcdefgh", 0), 4u);  // the last 4 bytes could start "world"
  EXPECT_EQ(stops.SafeLength("ab", 0), 0u);
  // Never inside a UTF-8 character: "é" is 2 bytes at [4, 6); a cut at 5 backs off to 4.
  EXPECT_EQ(stops.SafeLength("abcx\xC3\xA9yzw", 0), 4u);
  EXPECT_TRUE(StopStrings({"", ""}).empty());
}

TEST(OutputProcessorTest, StreamedTextEqualsTheWholeCompletionCutAtTheStop) {
  auto tokenizer = LoadTokenizer(kModel);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer* tok = tokenizer->get();
  const std::vector<int> ids = tok->Encode("The scalar is a scalar, but it is not\nscalar. The end", false);
  ASSERT_GT(ids.size(), 8u);
  for (const std::string stop : {"", "but", "scalar.", "not found"}) {
    const StopStrings stops(std::vector<std::string>{stop});
    // Generation as the engine runs it: ids one step at a time until the stop check (or the ids) end it.
    const auto check = MakeStopCheck(tok, stops);
    OutputProcessor streaming(tok, stops);
    std::string streamed;
    std::vector<int> generated;
    for (size_t i = 0; i < ids.size(); ++i) {
      generated.push_back(ids[i]);
      const bool finished = i + 1 == ids.size() || (!stops.empty() && check(generated));
      streamed += streaming.Feed({ids[i]}, finished);
      if (!stop.empty()) EXPECT_EQ(streamed.find(stop), std::string::npos) << stop;  // never sent
      if (finished) break;
    }
    const std::string full = tok->Decode(generated, true);
    const std::string whole = OutputProcessor(tok, stops).Feed(generated, /*finished=*/true);
    EXPECT_EQ(whole, full.substr(0, stops.CutAt(full))) << stop;
    EXPECT_EQ(streamed, whole) << stop;
    if (stop == "but") EXPECT_LT(generated.size(), ids.size());  // the stop string ended it early
  }
}

TEST(OutputProcessorTest, WithoutATokenizerThereIsNoText) {
  OutputProcessor p(nullptr, StopStrings({"x"}));
  EXPECT_EQ(p.Feed({1, 2, 3}, true), "");
}

}  // namespace
}  // namespace layerskip
