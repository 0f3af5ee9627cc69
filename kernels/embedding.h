#pragma once
// Token embedding lookup.
#include <cstdint>

#include "engine/core/matrix.h"

namespace layerskip::cpu {

// ids: [n] (each in [0, V)), table: [V, D] bf16 or f32, out: [n, D] f32.
void Embedding(const int* ids, int64_t n, const Matrix& table, float* out);

}  // namespace layerskip::cpu
