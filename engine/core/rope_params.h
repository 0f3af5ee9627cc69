#pragma once
// Rotary position embedding parameters (base layer: the RoPE kernels of every device take these, the model
// config provides them: LlamaConfig::rope()).
#include <optional>
#include <string>

namespace layerskip {

// rope_scaling of type "llama3" (Llama 3.1 / 3.2). Other types are rejected when config.json is parsed.
struct RopeScaling {
  std::string rope_type = "llama3";
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct RopeParams {
  int head_dim = 0;       // the rotated vector's length (pairs (i, i + head_dim/2))
  float theta = 10000.0f;  // rope_theta
  std::optional<RopeScaling> scaling;
};

}  // namespace layerskip
