#pragma once
// In-memory model weights: matrices in bf16 (default), f32 or int8 (docs/engine.md, "8-bit weights"), norms in
// f32. bf16 and f32 matrices may live in place in the checkpoint's memory map (zero-copy loading).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/util/bf16.h"

namespace layerskip {

enum class WeightType { kBF16, kF32, kInt8 };
const char* WeightTypeName(WeightType t);  // "bf16" / "f32" / "int8"

// int8 layout: each row is quantised in groups of kInt8Group columns (symmetric, one f32 scale per group) and
// padded with zeros to a multiple of kInt8Block columns. Within a block of 256 columns the bytes are ordered so
// that 32-byte chunk c holds, for each group g = 0..7, the 4 columns g*32 + c*4 .. +3: an 8-lane int32 dot
// product accumulates group g in lane g (kernels/matmul_int8_cpu.cc). Bytes are stored offset by +128 (u8).
constexpr int64_t kInt8Group = 32;
constexpr int64_t kInt8Block = 256;
inline int64_t Int8PaddedCols(int64_t cols) { return (cols + kInt8Block - 1) / kInt8Block * kInt8Block; }
// Byte position of column k inside its (padded) row.
inline int64_t Int8Position(int64_t k) {
  const int64_t b = k / kInt8Block, r = k % kInt8Block, g = r / kInt8Group, w = r % kInt8Group;
  return b * kInt8Block + (w / 4) * 32 + g * 4 + (w % 4);
}

// Row-major [rows, cols] matrix in a 64-byte aligned buffer, or (bf16/f32) in place in a memory-mapped
// checkpoint, aligned to its element size only. Linear layers are stored as in PyTorch: [out_features,
// in_features], so y = x @ W^T. int8: data() is [rows, Int8PaddedCols(cols)] bytes (layout above) and scales()
// [rows, Int8PaddedCols(cols) / kInt8Group] f32 (0 for padding groups).
class Matrix {
 public:
  Matrix(WeightType type, int64_t rows, int64_t cols);  // owned, zero-filled (int8: all weights 0)
  // bf16/f32 data owned by someone else (a checkpoint mapping, kept alive by `owner`); read-only.
  Matrix(WeightType type, int64_t rows, int64_t cols, const void* data, std::shared_ptr<const void> owner);
  ~Matrix();
  Matrix(const Matrix&) = delete;
  Matrix& operator=(const Matrix&) = delete;

  WeightType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t bytes() const { return bytes_; }  // data (+ int8 scales)
  bool in_place() const { return owner_ != nullptr; }  // points into a checkpoint mapping
  void* data() { return data_; }
  const void* data() const { return data_; }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data_); }
  const float* f32() const { return static_cast<const float*>(data_); }
  const uint8_t* int8() const { return static_cast<const uint8_t*>(data_); }
  int64_t int8_stride() const { return Int8PaddedCols(cols_); }  // bytes per int8 row
  float* scales() { return scales_; }
  const float* scales() const { return scales_; }
  float At(int64_t r, int64_t c) const;  // element as f32 (slow; tests and embedding; int8 dequantised)

 private:
  WeightType type_;
  int64_t rows_, cols_;
  size_t bytes_;
  size_t alloc_bytes_ = 0;  // owned data bytes (0: in place)
  void* data_;
  float* scales_ = nullptr;  // int8 only
  std::shared_ptr<const void> owner_;
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
