#pragma once
// Runs whole requests to completion on one backend: the call behind `layerskip generate`, `layerskip
// bench` and the tests. The service's scheduler steps through decode_step.h directly instead.
#include <vector>

#include "absl/status/statusor.h"
#include "engine/decode/decode_step.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/backend.h"

namespace layerskip {

struct GenerateResult {
  std::vector<int> ids;  // generated ids only
  FinishReason finish_reason = FinishReason::kNone;
  SpecStats spec;
  double prefill_seconds = 0.0;  // the first step: prompt processing and the first token
  double decode_seconds = 0.0;   // every later step
};

// Generates for each prompt in its own slot (slot i for prompts[i]; the backend's cache needs
// prompts.size() slots), all in one batch. Prompts must be non-empty, in the vocabulary and shorter than
// the context.
absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(Backend& backend, const std::vector<std::vector<int>>& prompts,
                                                          const std::vector<GenerationParams>& params,
                                                          const DecodeOptions& options);

}  // namespace layerskip
