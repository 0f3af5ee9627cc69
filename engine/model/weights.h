#pragma once
// In-memory model weights: matrices in bf16 (default) or f32, norms in f32.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/util/bf16.h"

namespace layerskip {

enum class WeightType { kBF16, kF32 };
const char* WeightTypeName(WeightType t);  // "bf16" / "f32"

// Row-major [rows, cols] matrix in a 64-byte aligned buffer. Linear layers are stored as in PyTorch:
// [out_features, in_features], so y = x @ W^T.
class Matrix {
 public:
  Matrix(WeightType type, int64_t rows, int64_t cols);
  ~Matrix();
  Matrix(const Matrix&) = delete;
  Matrix& operator=(const Matrix&) = delete;

  WeightType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t bytes() const { return bytes_; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data_); }
  const float* f32() const { return static_cast<const float*>(data_); }
  float At(int64_t r, int64_t c) const;  // element as f32 (slow; tests and embedding)

 private:
  WeightType type_;
  int64_t rows_, cols_;
  size_t bytes_;
  void* data_;
};

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
