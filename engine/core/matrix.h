#pragma once
// The weight matrix every layer shares (base layer: kernels and the engine both use it): a row-major
// [rows, cols] matrix of bf16, f32 or int8 elements. Linear layers are stored as in PyTorch: [out_features,
// in_features], so y = x @ W^T.
#include <cstddef>
#include <cstdint>
#include <memory>

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

}  // namespace layerskip
