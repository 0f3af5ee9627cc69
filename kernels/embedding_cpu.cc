#include <cstring>

#include "kernels/embedding.h"

#include "engine/util/bf16.h"

namespace layerskip::cpu {

void Embedding(const int* ids, int64_t n, const Matrix& table, float* out) {
  const int64_t D = table.cols();
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * D;
    if (table.type() == WeightType::kF32) {
      std::memcpy(o, table.f32() + ids[i] * D, D * sizeof(float));
    } else {
      const uint16_t* row = table.bf16() + ids[i] * D;
      for (int64_t k = 0; k < D; ++k) o[k] = Bf16ToF32(row[k]);
    }
  }
}

}  // namespace layerskip::cpu
