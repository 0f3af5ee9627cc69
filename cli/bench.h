#pragma once
// Shared by `layerskip bench`'s modes: one timed batch decode, and the self-speculative sweep.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flags/flags.h"
#include "engine/decode/generate.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip::cli {

using flags::Flags;  // flags/flags.h
using flags::ParseIntList;

struct BenchRun {
  double prefill_tps = 0, decode_tps = 0, acceptance = 0, tokens_per_round = 0;
  size_t generated = 0;
  SpecStats spec;  // summed over the batch
  std::vector<std::vector<int>> ids;
};

// Decodes `decode_tokens` per prompt (no eos), all prompts in one batch; decode tokens/s counts every
// step after the first (the first step prefills).
// `backend` has a slot per prompt.
absl::StatusOr<BenchRun> MeasureDecode(Backend& backend, const std::vector<std::vector<int>>& prompts,
                                       int decode_tokens, const DecodeOptions& decode);

// --mode self-speculative: paired, interleaved autoregressive / self-speculative runs per (E, d) (and the
// automatic mode with --auto), the median paired ratio with its spread, the cost model's prediction, the
// load average. `cases`: each a batch of prompts measured on its own, on `backend` (the model `m` on
// --device, with a slot for each prompt of the largest case).
absl::Status BenchSelfSpeculative(const Flags& flags, LoadedModel& m, Backend& backend, const std::string& model_id,
                                  const std::vector<std::vector<std::vector<int>>>& cases, int decode_tokens);

}  // namespace layerskip::cli
