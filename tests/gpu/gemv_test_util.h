#pragma once
// Helpers of the GPU GEMV tests (cuda_gemv_test.cc, cuda_new_kernels_test.cc): random weights on the host
// and the device, bitwise comparison.
#include <cstring>
#include <memory>
#include <vector>

#include "engine/model/weights.h"
#include "engine/util/bf16.h"
#include "kernels/device_weight.h"
#include "tests/gpu/cuda_model_util.h"
#include "tests/gpu/cuda_test_util.h"

namespace layerskip::cuda::testing {

// A [rows, cols] weight in `type` and the same values as f32 (bf16 widened exactly).
struct HostWeight {
  std::unique_ptr<Matrix> m;
  std::vector<float> f32;
};
inline HostWeight RandomWeight(WeightType type, int64_t rows, int64_t cols, uint64_t seed) {
  HostWeight h{std::make_unique<Matrix>(type, rows, cols), RandomVector(rows * cols, seed)};
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (type == WeightType::kF32) {
      static_cast<float*>(h.m->data())[i] = h.f32[i];
    } else {
      const uint16_t b = F32ToBf16(h.f32[i]);
      static_cast<uint16_t*>(h.m->data())[i] = b;
      h.f32[i] = Bf16ToF32(b);
    }
  }
  return h;
}

struct DeviceMatrix {
  DeviceBuffer<uint8_t> data;
  DeviceWeight view;
};
inline DeviceMatrix UpWeight(const Matrix& m) {
  std::vector<uint8_t> bytes(m.bytes());
  std::memcpy(bytes.data(), m.data(), m.bytes());
  DeviceMatrix d{Up(bytes), {}};
  d.view = {m.type() == WeightType::kBF16 ? DType::kBF16 : DType::kF32, m.rows(), m.cols(), d.data.get()};
  return d;
}

inline bool Bitwise(const std::vector<float>& a, const float* b) { return std::memcmp(a.data(), b, a.size() * 4) == 0; }

}  // namespace layerskip::cuda::testing
