#pragma once
// Measures a CostModel on a backend (the device that will decode: CPU or GPU): layer passes, the exit head and
// the draft head (argmax, as decoding uses them) for n = 1..16 rows, and the acceptance prior per exit layer
// (how often each early exit agrees with the full model on a short teacher-forced text). Uses slot 0 of the
// backend's KV cache and frees it again; bounded to about `budget_seconds`.
#include <vector>

#include "absl/status/statusor.h"
#include "engine/decode/cost_model.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/model.h"

namespace layerskip {

class Tokenizer;

struct CalibrationOptions {
  std::vector<int> probe_tokens;  // text for the acceptance prior (>= 2 ids in the vocabulary)
  double budget_seconds = 1.0;    // rough bound; large models measure fewer row counts and interpolate
};

// The backend must hold every layer, the embedding and the head, and slot 0 must be free.
absl::StatusOr<CostModel> CalibrateCostModel(Backend& backend, const CalibrationOptions& options);
// The same on a CPU backend over `model` with a scratch KV cache of its own.
absl::StatusOr<CostModel> CalibrateCostModel(Model& model, const CalibrationOptions& options);

// The model used when calibration is off (documented in docs/self-speculative.md): time proportional to
// the bytes of weights read (at 20 GB/s), each row past the first adding 10% to a pass, and an acceptance
// prior of E / L at exit layer E.
CostModel DefaultCostModel(const Model& model);
// The same from the bytes one pass reads: one layer, the exit head, the draft head.
CostModel DefaultCostModel(int num_layers, double layer_bytes, double head_bytes, double draft_head_bytes);

// The acceptance prior's default text: a few lines of Python encoded by `tokenizer`, or, without a
// tokenizer, seeded pseudo-random ids in [0, vocab_size).
std::vector<int> DefaultProbeTokens(const Tokenizer* tokenizer, int vocab_size);

}  // namespace layerskip
