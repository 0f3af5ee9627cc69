#pragma once
// Symmetric int8 quantisation of weight matrices (layout: engine/model/weights.h, scheme: docs/engine.md).
#include <cstdint>
#include <functional>
#include <memory>

#include "engine/model/weights.h"

namespace layerskip {

// An int8 matrix of [rows, cols] from f32 rows: row(r, out) writes row r's cols values to out. Per group of
// kInt8Group columns: scale = max|w| / 127, q = nearbyint(w * (127 / max|w|)) in [-127, 127]; an all-zero
// group has scale 0. Rows are quantised by `threads` threads.
std::unique_ptr<Matrix> QuantizeInt8(int64_t rows, int64_t cols, const std::function<void(int64_t, float*)>& row,
                                     int threads);
// Replaces every layer matrix of `w` by its int8 quantisation (random models in tests and benchmarks).
void QuantizeLayersInt8(ModelWeights& w);

}  // namespace layerskip
