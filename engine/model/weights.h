#pragma once
// In-memory model weights: matrices (engine/core/matrix.h) in bf16 (default), f32 or int8 (docs/engine.md,
// "8-bit weights"), norms in f32. bf16 and f32 matrices may live in place in the checkpoint's memory map.
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
  WeightType type = WeightType::kBF16;  // embedding, head, and layers unless int8_layers (kBF16 or kF32)
  bool int8_layers = false;             // the layers' matrices are kInt8 (--weights int8)
  int first_layer = 0;
  int end_layer = 0;
  std::shared_ptr<const Matrix> embed;    // [V, D]; null when not loaded
  std::vector<LayerWeights> layers;       // layers[l - first_layer]
  std::vector<float> final_norm;          // [D]; empty when the head is not loaded
  std::shared_ptr<const Matrix> lm_head;  // [V, D]; == embed when tied and both loaded; null when not loaded

  const LayerWeights& layer(int l) const { return layers[l - first_layer]; }
  bool has_layer(int l) const { return l >= first_layer && l < end_layer; }
  size_t bytes() const;  // matrices + norms, counting a tied matrix once
  const char* weights_name() const { return int8_layers ? "int8" : WeightTypeName(type); }  // ModelInfo.weights
};

// Load statistics (`layerskip inspect`).
struct LoadStats {
  double seconds = 0;        // LoadModelWeights wall time
  size_t in_place_bytes = 0;  // matrices used in place from the memory map
  size_t copied_bytes = 0;    // matrices converted or copied (dtype change, int8, misaligned)
  int misaligned = 0;         // tensors copied because their data was not aligned to the element size
};

struct LoadOptions {
  WeightType type = WeightType::kBF16;  // kBF16 or kF32
  bool int8_layers = false;             // quantise the layers' matrices to int8 (embedding and head stay `type`)
  bool in_place = true;                 // use bf16/f32 tensors of the load's type from the memory map (no copy)
  LoadStats* stats = nullptr;           // filled when set
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
