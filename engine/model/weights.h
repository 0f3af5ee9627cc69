#pragma once
// In-memory model weights: matrices (engine/core/matrix.h) in bf16 (default) or f32, norms in f32.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/matrix.h"  // WeightType, Matrix
#include "engine/model/config.h"
#include "engine/util/bf16.h"

namespace layerskip {

struct LayerWeights {
  std::vector<float> attn_norm;              // [D]
  std::unique_ptr<Matrix> wq, wk, wv, wo;    // [H*hd, D], [KV*hd, D], [KV*hd, D], [D, H*hd]
  std::vector<float> mlp_norm;               // [D]
  std::unique_ptr<Matrix> w_gate, w_up;      // [F, D]
  std::unique_ptr<Matrix> w_down;            // [D, F]
};

// Weights of layers [first_layer, end_layer) plus, optionally, the embedding and the exit head
// (final norm + LM head). A pipeline stage loads only its part.
struct ModelWeights {
  LlamaConfig config;
  WeightType type = WeightType::kBF16;
  int first_layer = 0;
  int end_layer = 0;
  std::shared_ptr<const Matrix> embed;    // [V, D]; null when not loaded
  std::vector<LayerWeights> layers;       // layers[l - first_layer]
  std::vector<float> final_norm;          // [D]; empty when the head is not loaded
  std::shared_ptr<const Matrix> lm_head;  // [V, D]; == embed when tied and both loaded; null when not loaded

  const LayerWeights& layer(int l) const { return layers[l - first_layer]; }
  bool has_layer(int l) const { return l >= first_layer && l < end_layer; }
  size_t bytes() const;  // matrices + norms, counting a tied matrix once
};

struct LoadOptions {
  WeightType type = WeightType::kBF16;
  int first_layer = 0;
  int end_layer = -1;  // -1: num_hidden_layers
  bool embedding = true;
  bool head = true;
};

// Loads config.json + safetensors (single or sharded) from `dir`, converting F32/F16/BF16 to `options.type`.
// Every expected tensor must exist with the shape config.json implies (error names tensor and file).
absl::StatusOr<ModelWeights> LoadModelWeights(const std::filesystem::path& dir, const LoadOptions& options = {});

// Random weights (normal * 0.02, norms around 1) for a config: benchmarks and tests, no files.
ModelWeights RandomModelWeights(const LlamaConfig& config, WeightType type, uint64_t seed);

}  // namespace layerskip
