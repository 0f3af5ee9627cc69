#pragma once
// The body of POST /v1/completions and /v1/chat/completions -> a v1::GenerateRequest (the gRPC request,
// so both front ends share ValidateGenerateRequest) plus how to shape the response. OpenAI fields: model,
// prompt (a string, one string in a list, or token ids) / messages, max_tokens (max_completion_tokens),
// temperature, top_p, seed, stop (string or list), n (1 only), stream, stream_options.include_usage.
// LayerSkip extras as extra body fields, the way vLLM takes its own: mode ("autoregressive", "early-exit",
// "self-speculative"), exit_layer, speculations (an integer or "auto"), top_k, ignore_eos,
// add_generation_prompt (chat). Fields OpenAI defines that this server does not implement (echo,
// logprobs, suffix, penalties, logit_bias, tools, best_of) are refused when set to a non-default value.
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "layerskip/v1/inference.pb.h"

namespace layerskip::coordinator::http {

struct OpenAiRequest {
  bool chat = false;
  std::string model;  // as given ("" when absent)
  v1::GenerateRequest generate;  // prompt (completions) set; the chat prompt is rendered by the caller
  nlohmann::ordered_json messages;  // chat: the messages (keys in order), content flattened to strings
  bool add_generation_prompt = true;
  bool stream = false;
  bool include_usage = false;
};

// Parses and checks the body's types. Errors are INVALID_ARGUMENT starting with the field name.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(const std::string& body, bool chat);

}  // namespace layerskip::coordinator::http
