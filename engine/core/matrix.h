#pragma once
// The weight matrix every layer shares (base layer: kernels and the engine both use it): a row-major
// [rows, cols] matrix of bf16 or f32 elements in a 64-byte aligned buffer. Linear layers are stored as in
// PyTorch: [out_features, in_features], so y = x @ W^T.
#include <cstddef>
#include <cstdint>

namespace layerskip {

enum class WeightType { kBF16, kF32 };
const char* WeightTypeName(WeightType t);  // "bf16" / "f32"

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

}  // namespace layerskip
