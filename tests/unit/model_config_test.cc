// Tests for config.json parsing (engine/model/config.h): accepted Llama configs, defaults, and one test per
// rejected field, each checking the status code and that the message names the file and field.
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/model/config.h"

namespace layerskip {
namespace {

using nlohmann::json;

// Llama-3.2-1B's config.json.
json Llama32Config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "mlp_bias": false, "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

absl::StatusOr<LlamaConfig> Parse(const json& j) { return ParseLlamaConfig(j.dump(), "dir/config.json"); }

// Expects `code` and a message naming the file and `needle` (usually "field 'X'").
void ExpectError(const absl::StatusOr<LlamaConfig>& r, absl::StatusCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning " << needle;
  EXPECT_EQ(r.status().code(), code) << r.status();
  EXPECT_NE(r.status().message().find("dir/config.json"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
}

TEST(ModelConfig, ParsesLlama32) {
  auto r = Parse(Llama32Config());
  ASSERT_TRUE(r.ok()) << r.status();
  const LlamaConfig& c = *r;
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.num_hidden_layers, 16);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.kv_dim(), 512);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->rope_type, "llama3");
  EXPECT_FLOAT_EQ(c.rope_scaling->factor, 32.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling->low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling->high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfig, Defaults) {
  json j = {{"vocab_size", 32}, {"hidden_size", 8}, {"intermediate_size", 12}, {"num_hidden_layers", 2},
            {"num_attention_heads", 2}, {"head_dim", nullptr}, {"rope_scaling", nullptr}, {"eos_token_id", 2},
            {"bos_token_id", nullptr}, {"dtype", "float32"}};
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_key_value_heads, 2);
  EXPECT_EQ(r->head_dim, 4);
  EXPECT_FALSE(r->rope_scaling.has_value());
  EXPECT_FALSE(r->tie_word_embeddings);
  EXPECT_FALSE(r->bos_token_id.has_value());
  EXPECT_EQ(r->eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(r->torch_dtype, "float32");
  EXPECT_FLOAT_EQ(r->rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(r->rms_norm_eps, 1e-6f);
}

TEST(ModelConfig, HeadDimOverrideNeedNotMatchHidden) {
  json j = Llama32Config();
  j["head_dim"] = 128;  // 32 * 128 != 2048 is allowed; q/k/v shapes follow head_dim
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->q_dim(), 4096);
  EXPECT_EQ(r->kv_dim(), 1024);
}

TEST(ModelConfig, RopeScalingTypeKeyAndNull) {
  json j = Llama32Config();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->rope_scaling.has_value());
  j["rope_scaling"] = nullptr;
  r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->rope_scaling.has_value());
}

// transformers v5 writes rope_theta and the scaling inside "rope_parameters".
TEST(ModelConfig, RopeParametersOfTransformersV5) {
  json j = Llama32Config();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 500000.0}, {"rope_type", "default"}};
  auto r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rope_theta, 500000.0f);
  EXPECT_FALSE(r->rope_scaling.has_value());
  j["rope_parameters"] = {{"rope_theta", 250000.0}, {"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  r = Parse(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rope_theta, 250000.0f);
  ASSERT_TRUE(r->rope_scaling.has_value());
  EXPECT_EQ(r->rope_scaling->factor, 8.0f);
  j["rope_parameters"] = {{"rope_theta", 1e4}, {"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(Parse(j), absl::StatusCode::kUnimplemented, "field 'rope_parameters'");
  j["rope_parameters"] = 3;
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "field 'rope_parameters'");
}

TEST(ModelConfig, RejectsOtherRopeTypes) {
  for (const char* type : {"linear", "dynamic", "yarn"}) {
    json j = Llama32Config();
    j["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    ExpectError(Parse(j), absl::StatusCode::kUnimplemented, "field 'rope_scaling'");
  }
  json j = Llama32Config();
  j["rope_scaling"].erase("factor");
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "factor");
  j = Llama32Config();
  j["rope_scaling"]["high_freq_factor"] = 1.0;  // must exceed low_freq_factor
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "field 'rope_scaling'");
  j = Llama32Config();
  j["rope_scaling"] = "llama3";
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "field 'rope_scaling'");
}

TEST(ModelConfig, RejectsUnsupportedArchitecture) {
  json j = Llama32Config();
  j["architectures"] = {"MistralForCausalLM"};
  auto r = Parse(j);
  ExpectError(r, absl::StatusCode::kUnimplemented, "unsupported architecture MistralForCausalLM");
  ExpectError(r, absl::StatusCode::kUnimplemented, "field 'architectures'");
  j = Llama32Config();
  j["model_type"] = "qwen2";
  ExpectError(Parse(j), absl::StatusCode::kUnimplemented, "unsupported architecture qwen2");
  j = Llama32Config();
  j["architectures"] = "LlamaForCausalLM";  // not a list
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "field 'architectures'");
}

TEST(ModelConfig, RejectsMissingAndMistypedFields) {
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
    json j = Llama32Config();
    j.erase(field);
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
    j[field] = "2048";
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
    j[field] = 0;
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
    j[field] = -4;
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
    j[field] = 2.5;
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
    j[field] = 1e300;
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + field + "'");
  }
}

TEST(ModelConfig, RejectsBadValues) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"num_key_value_heads", 5},     // 32 % 5 != 0
      {"num_key_value_heads", 0},     //
      {"head_dim", -64},              //
      {"hidden_act", "gelu"},         //
      {"attention_bias", true},       //
      {"mlp_bias", true},             //
      {"mlp_bias", "no"},             //
      {"tie_word_embeddings", 1},     //
      {"rms_norm_eps", -1e-5},        //
      {"rms_norm_eps", 0.0},          //
      {"rope_theta", "500000"},       //
      {"max_position_embeddings", 0}, //
      {"eos_token_id", "</s>"},       //
      {"eos_token_id", json::array({1, "x"})},
      {"eos_token_id", -1},           //
      {"bos_token_id", 1.5},          //
      {"torch_dtype", 16},            //
  };
  for (const Case& c : cases) {
    json j = Llama32Config();
    j[c.field] = c.value;
    ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, std::string("field '") + c.field + "'");
  }
  json j = Llama32Config();
  j.erase("head_dim");
  j["hidden_size"] = 2050;  // not divisible by 32 heads and no head_dim
  ExpectError(Parse(j), absl::StatusCode::kInvalidArgument, "field 'head_dim'");
}

TEST(ModelConfig, RejectsMalformedJson) {
  auto r = ParseLlamaConfig("{\"hidden_size\": 8,", "dir/config.json");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "invalid JSON");
  r = ParseLlamaConfig("[1, 2]", "dir/config.json");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "object");
  r = ParseLlamaConfig("", "dir/config.json");
  ExpectError(r, absl::StatusCode::kInvalidArgument, "invalid JSON");
}

TEST(ModelConfig, JsonRoundTrip) {
  auto r = Parse(Llama32Config());
  ASSERT_TRUE(r.ok());
  std::string text = LlamaConfigToJson(*r);
  EXPECT_NE(text.find("1e-05"), std::string::npos) << text;  // shortest float text, not 9.99999974e-06
  auto back = ParseLlamaConfig(text, "roundtrip");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(back->hidden_size, r->hidden_size);
  EXPECT_EQ(back->num_key_value_heads, r->num_key_value_heads);
  EXPECT_EQ(back->head_dim, r->head_dim);
  EXPECT_EQ(back->rms_norm_eps, r->rms_norm_eps);
  EXPECT_EQ(back->rope_theta, r->rope_theta);
  EXPECT_EQ(back->rope_scaling->factor, r->rope_scaling->factor);
  EXPECT_EQ(back->tie_word_embeddings, r->tie_word_embeddings);
  EXPECT_EQ(back->eos_token_ids, r->eos_token_ids);
  EXPECT_EQ(back->bos_token_id, r->bos_token_id);
  EXPECT_EQ(back->torch_dtype, r->torch_dtype);
}

TEST(ModelConfig, LoadFromDirectory) {
  auto dir = std::filesystem::temp_directory_path() / ("ls_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto missing = LoadLlamaConfig(dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("config.json"), std::string::npos);
  {
    std::ofstream(dir / "config.json") << Llama32Config().dump(2);
  }
  auto r = LoadLlamaConfig(dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_hidden_layers, 16);
  {
    std::ofstream(dir / "config.json") << "{\"hidden_size\": true}";
  }
  r = LoadLlamaConfig(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find((dir / "config.json").string()), std::string::npos) << r.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace layerskip
