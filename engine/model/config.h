#pragma once
// LlamaConfig: the fields of a Hugging Face LlamaForCausalLM config.json that the engine uses.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/rope_params.h"  // RopeScaling, RopeParams

namespace layerskip {

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;  // defaults to num_attention_heads when absent
  int head_dim = 0;             // defaults to hidden_size / num_attention_heads when absent
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // must be false (rejected otherwise)
  bool mlp_bias = false;        // must be false (rejected otherwise)
  std::string hidden_act = "silu";
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // config.json "eos_token_id": int or list
  std::string torch_dtype;         // informational

  int q_dim() const { return num_attention_heads * head_dim; }
  int kv_dim() const { return num_key_value_heads * head_dim; }
  RopeParams rope() const { return RopeParams{head_dim, rope_theta, rope_scaling}; }
};

// Parses config.json text. `source` names the file in error messages.
// Errors: InvalidArgument naming the field (missing, wrong type, out of range, unsupported value).
absl::StatusOr<LlamaConfig> ParseLlamaConfig(std::string_view json_text, std::string_view source = "config.json");

// Reads and parses `dir`/config.json (NotFound if absent).
absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::filesystem::path& dir);

// Serialises a config as Hugging Face config.json text (used to write random / exported models).
std::string LlamaConfigToJson(const LlamaConfig& config);

// FNV-1a 64 of `dir`/config.json's bytes (0 when unreadable): the coordinator and its workers compare it to
// know they serve the same model.
uint64_t ConfigFingerprint(const std::filesystem::path& dir);

}  // namespace layerskip
