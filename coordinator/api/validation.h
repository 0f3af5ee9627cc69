#pragma once
// Checks a GenerateRequest against the model and the server's defaults and turns it into a RequestSpec.
// Every error is INVALID_ARGUMENT and starts with the offending field's name ("top_p: ...").
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduling/request.h"
#include "engine/decode/generate.h"
#include "engine/tokenizer/tokenizer.h"
#include "layerskip/v1/inference.pb.h"

namespace layerskip::coordinator {

struct ServingDefaults {
  int num_layers = 0;
  int vocab_size = 0;
  int context = 0;                 // positions per sequence
  const Tokenizer* tokenizer = nullptr;  // null: text prompts and stop sequences are refused
  std::vector<int> eos_ids;        // model config + tokenizer
  DecodeOptions options;           // --default-mode, --default-exit-layer, --default-speculations
  int fixed_exit_layer = 0;        // > 0: the executor drafts only at this E (a pipeline's stage split)
  int max_tokens = 64;             // when the request leaves max_tokens unset
};

absl::StatusOr<RequestSpec> ValidateGenerateRequest(const v1::GenerateRequest& request, const ServingDefaults& d);

}  // namespace layerskip::coordinator
