// The chat template renderer against transformers' apply_chat_template (fixtures written by
// tests/fixtures/make_chat_template_fixtures.py for the Llama 2 and Llama 3 templates and a template that
// exercises the rest of the subset), and its errors: unsupported constructs, malformed templates and
// run-time failures are INVALID_ARGUMENT naming the line, never a crash.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coordinator/api/chat/chat_template.h"

namespace layerskip::coordinator::chat {
namespace {

using nlohmann::ordered_json;

ordered_json LoadFixture(const std::string& name) {
  std::ifstream in(std::string(LAYERSKIP_SOURCE_DIR) + "/tests/fixtures/chat_templates/" + name + ".json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ordered_json::parse(ss.str());
}

absl::StatusOr<std::string> RenderSource(const std::string& source, const ordered_json& messages,
                                         bool add_generation_prompt = true) {
  auto t = ChatTemplate::Parse(source);
  if (!t.ok()) return t.status();
  return (*t)->Render(messages, add_generation_prompt, "<s>", "</s>");
}

const ordered_json kOneUser = ordered_json::parse(R"([{"role": "user", "content": "hi"}])");

class TransformersParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformersParity, RendersLikeApplyChatTemplate) {
  const ordered_json f = LoadFixture(GetParam());
  auto t = ChatTemplate::Parse(f["template"].get<std::string>());
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_FALSE(f["cases"].empty());
  for (const ordered_json& c : f["cases"]) {
    absl::StatusOr<std::string> got = (*t)->Render(c["messages"], c["add_generation_prompt"].get<bool>(),
                                                   f["bos_token"].get<std::string>(), f["eos_token"].get<std::string>());
    if (c.contains("error")) {
      ASSERT_FALSE(got.ok()) << c["messages"].dump();
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(std::string(got.status().message()).find(c["error"].get<std::string>()), std::string::npos)
          << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << got.status() << " for " << c["messages"].dump();
      EXPECT_EQ(*got, c["expected"].get<std::string>()) << c["messages"].dump();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TransformersParity, ::testing::Values("llama2", "llama3", "features"));

TEST(ChatTemplate, WhitespaceControl) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one; "-" strips
  // all whitespace on its side; {{ }} keeps both.
  EXPECT_EQ(*RenderSource("{% if true %}\n  a\n{% endif %}\nb", kOneUser), "  a\nb");
  EXPECT_EQ(*RenderSource("x\n    {% if true %}y{% endif %}", kOneUser), "x\ny");
  EXPECT_EQ(*RenderSource("a   {%- if true -%}   b   {%- endif %}", kOneUser), "ab");
  EXPECT_EQ(*RenderSource("a {{ 'b' }}\n c", kOneUser), "a b\n c");
  EXPECT_EQ(*RenderSource("a {# comment #}\nb", kOneUser), "a b");
  EXPECT_EQ(*RenderSource("a  {{- 'b' -}}  c", kOneUser), "abc");
}

TEST(ChatTemplate, Expressions) {
  EXPECT_EQ(*RenderSource("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 1 / 2 }}", kOneUser), "7 9 3 -4 0.5");
  EXPECT_EQ(*RenderSource("{{ 'a' ~ 1 ~ none ~ true }}", kOneUser), "a1NoneTrue");
  EXPECT_EQ(*RenderSource("{{ not false and (1 < 2 or x) }}", kOneUser), "True");
  EXPECT_EQ(*RenderSource("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}", kOneUser), "True False True");
  EXPECT_EQ(*RenderSource("{{ messages[0]['content'] | upper }}{{ messages[-1].role }}", kOneUser), "HIuser");
  EXPECT_EQ(*RenderSource("{{ 'yes' if messages | length == 1 else 'no' }}", kOneUser), "yes");
  EXPECT_EQ(*RenderSource("{{ missing }}|{{ missing is defined }}|{{ missing | default('d') }}", kOneUser), "|False|d");
  EXPECT_EQ(*RenderSource("{% for i in range(3) %}{{ i }}{% if loop.last %}.{% endif %}{% endfor %}", kOneUser), "012.");
  EXPECT_EQ(*RenderSource("{% for i in [1, 2, 3, 4] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", kOneUser), "13");
  EXPECT_EQ(*RenderSource("{% for x in [] %}a{% else %}empty{% endfor %}", kOneUser), "empty");
  EXPECT_EQ(*RenderSource("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", kOneUser), "1");
  EXPECT_EQ(*RenderSource("{{ {'a': [1, 'b']} | tojson }} {{ 'x\\ny' | tojson }}", kOneUser), "{\"a\": [1, \"b\"]} \"x\\ny\"");
  EXPECT_EQ(*RenderSource("{{ ' a b '.split() }} {{ 'a-b'.replace('-', '+') }} {{ 'ab'.endswith(('x', 'b')) }}", kOneUser),
            "['a', 'b'] a+b True");
}

TEST(ChatTemplate, RaiseException) {
  absl::StatusOr<std::string> r = RenderSource("{{ raise_exception('only user turns') }}", kOneUser);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("only user turns"), std::string::npos);
}

// Each case must fail with INVALID_ARGUMENT whose message contains the given text.
void ExpectError(const std::string& source, const std::string& text) {
  absl::StatusOr<std::string> r = RenderSource(source, kOneUser);
  ASSERT_FALSE(r.ok()) << source << " rendered " << *r;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << source;
  EXPECT_NE(std::string(r.status().message()).find(text), std::string::npos) << source << ": " << r.status();
}

TEST(ChatTemplate, UnsupportedConstructsAreClearErrors) {
  ExpectError("{% macro m() %}x{% endmacro %}", "the tag {% macro %} is not supported");
  ExpectError("line1\n{{ x | wordwrap }}", "line 2: the filter 'wordwrap' is not supported");
  ExpectError("{{ x is callable }}", "the test 'callable' is not supported");
  ExpectError("{% include 'a' %}", "not supported");
  ExpectError("{{ cycler() }}", "the function 'cycler' is not supported");
  ExpectError("{{ 'a'.zfill(3) }}", "the method 'zfill' of a string is not supported");
  ExpectError("{% set a, b = 1, 2 %}", "tuple assignment");
}

TEST(ChatTemplate, MalformedTemplatesAreClearErrors) {
  ExpectError("{% if true %}a", "missing {% endif %}");
  ExpectError("{{ 'a' ", "unterminated");
  ExpectError("{{ 'a }}", "unterminated string");
  ExpectError("{% for %}", "expected a loop variable");
  ExpectError("{{ 1 + }}", "expected an expression");
  ExpectError("{% endfor %}", "not supported");
  ExpectError("{{ a $ b }}", "unexpected character");
  ExpectError("{# never closed", "unterminated comment");
  ExpectError("{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}", "nested too deeply");
}

TEST(ChatTemplate, RunTimeErrorsAreClearErrors) {
  ExpectError("{{ missing.attr }}", "undefined value has no attribute 'attr'");
  ExpectError("{{ 1 + 'a' }}", "unsupported operand types for +");
  ExpectError("{{ 1 // 0 }}", "division by zero");
  ExpectError("{% for x in 3 %}{% endfor %}", "cannot loop over a int");
  ExpectError("{{ 'ab' * 100000000 }}", "too long");
  ExpectError("{% for i in range(100000000) %}{% endfor %}", "range() is too long");
  ExpectError("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", "too many loop iterations");
  ExpectError("{{ 9223372036854775807 + 1 }}", "integer overflow");
  ExpectError("{{ 2 ** 100 }}", "integer overflow");
  ExpectError("{{ x is divisibleby 0 }}", "needs an integer");
}

TEST(ChatTemplate, EveryPrefixOfARealTemplateParsesOrFailsCleanly) {
  for (const char* name : {"llama2", "llama3", "features"}) {
    const std::string source = LoadFixture(name)["template"].get<std::string>();
    for (size_t n = 0; n <= source.size(); ++n) {
      auto t = ChatTemplate::Parse(source.substr(0, n));
      if (t.ok()) (void)(*t)->Render(kOneUser, true, "<s>", "</s>");
      else EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(ChatTemplateConfig, ReadsTheTemplateAndSpecialTokens) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("chat_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
               "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})";
  }
  absl::StatusOr<ChatTemplateConfig> c = ReadChatTemplateConfig(dir.string());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->source, "D");
  EXPECT_EQ(c->bos_token, "<s>");
  EXPECT_EQ(c->eos_token, "</s>");
  { std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": 3})"; }
  EXPECT_EQ(ReadChatTemplateConfig(dir.string()).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
  // The demo checkpoints carry no template.
  absl::StatusOr<ChatTemplateConfig> none = ReadChatTemplateConfig(std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->source.empty());
}

}  // namespace
}  // namespace layerskip::coordinator::chat
