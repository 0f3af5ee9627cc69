#include "coordinator/api/validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip::coordinator {
namespace {

absl::Status Invalid(const char* field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

}  // namespace

absl::StatusOr<RequestSpec> ValidateGenerateRequest(const v1::GenerateRequest& q, const ServingDefaults& d) {
  RequestSpec spec;
  // Prompt: text or ids, never both, never empty, ids in the vocabulary, room for one generated token.
  if (!q.prompt().empty() && q.prompt_ids_size() > 0) return Invalid("prompt", "give prompt or prompt_ids, not both");
  if (!q.prompt().empty()) {
    if (!d.tokenizer) return Invalid("prompt", "the model has no tokenizer; send prompt_ids");
    spec.prompt = d.tokenizer->Encode(q.prompt(), /*add_special_tokens=*/true);
    if (spec.prompt.empty()) return Invalid("prompt", "the prompt encodes to no tokens");
  } else {
    if (q.prompt_ids_size() == 0) return Invalid("prompt", "the prompt is empty (set prompt or prompt_ids)");
    for (int i = 0; i < q.prompt_ids_size(); ++i) {
      const int id = q.prompt_ids(i);
      if (id < 0 || id >= d.vocab_size)
        return Invalid("prompt_ids", absl::StrCat("id ", id, " at index ", i, " is outside the vocabulary [0, ", d.vocab_size, ")"));
      spec.prompt.push_back(id);
    }
  }
  const int prompt_len = static_cast<int>(spec.prompt.size());
  if (prompt_len >= d.context)
    return Invalid("prompt", absl::StrCat("the prompt has ", prompt_len, " tokens; the context holds ", d.context,
                                          " positions including at least one generated token"));

  GenerationParams& p = spec.params;
  const int64_t max_tokens = q.has_max_tokens() ? q.max_tokens() : std::min(d.max_tokens, d.context - prompt_len);
  if (max_tokens <= 0) return Invalid("max_tokens", absl::StrCat("must be positive, got ", max_tokens));
  if (prompt_len + max_tokens > d.context)
    return Invalid("max_tokens", absl::StrCat("prompt (", prompt_len, " tokens) + max_tokens (", max_tokens,
                                              ") exceeds the context of ", d.context, " positions"));
  p.max_tokens = static_cast<int>(max_tokens);
  const float temperature = q.has_temperature() ? q.temperature() : 0.0f;
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    return Invalid("temperature", absl::StrCat("must be >= 0, got ", temperature));
  const int top_k = q.has_top_k() ? q.top_k() : 0;
  if (top_k < 0) return Invalid("top_k", absl::StrCat("must be >= 0, got ", top_k));
  const float top_p = q.has_top_p() ? q.top_p() : 1.0f;
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Invalid("top_p", absl::StrCat("must be in (0, 1], got ", top_p));
  p.sampling.temperature = temperature;
  p.sampling.top_k = top_k;
  p.sampling.top_p = top_p;
  p.seed = q.has_seed() ? q.seed() : 0;
  if (!q.ignore_eos()) p.eos_ids = d.eos_ids;
  for (const std::string& s : q.stop()) {
    if (s.empty()) return Invalid("stop", "stop sequences must not be empty");
    if (!d.tokenizer) return Invalid("stop", "the model has no tokenizer for stop sequences");
    spec.stop.push_back(s);
  }

  // Decoding mode and speculation.
  DecodeOptions& o = spec.options;
  o = d.options;
  switch (q.mode()) {
    case v1::DECODE_MODE_UNSPECIFIED: break;
    case v1::DECODE_MODE_AUTOREGRESSIVE: o.mode = DecodeMode::kAutoregressive; break;
    case v1::DECODE_MODE_EARLY_EXIT: o.mode = DecodeMode::kEarlyExit; break;
    case v1::DECODE_MODE_SELF_SPECULATIVE: o.mode = DecodeMode::kSelfSpeculative; break;
    default: return Invalid("mode", absl::StrCat("unknown decode mode ", static_cast<int>(q.mode())));
  }
  if (q.auto_exit_layer() && q.has_exit_layer()) return Invalid("auto_exit_layer", "give exit_layer or auto_exit_layer, not both");
  if (q.auto_exit_layer() && o.mode == DecodeMode::kEarlyExit)
    return Invalid("auto_exit_layer", "the server chooses E for self-speculative decoding only; give exit_layer for early exit");
  if (q.has_exit_layer()) o.exit_layer = q.exit_layer();
  if (q.has_exit_layer() || o.mode != DecodeMode::kSelfSpeculative) o.auto_exit_layer = false;
  else if (q.auto_exit_layer()) o.auto_exit_layer = true;
  if (o.auto_exit_layer && d.fixed_exit_layer > 0) {  // a pipeline drafts on stage 0 only: its split is E
    o.exit_layer = d.fixed_exit_layer;
    o.auto_exit_layer = false;
  }
  const int L = d.num_layers;
  if (o.mode == DecodeMode::kEarlyExit && (o.exit_layer < 1 || o.exit_layer > L))
    return Invalid("exit_layer", absl::StrCat("must be in [1, ", L, "] for early-exit decoding, got ", o.exit_layer));
  if (o.mode == DecodeMode::kSelfSpeculative && (o.exit_layer < 1 || o.exit_layer >= L))
    return Invalid("exit_layer", absl::StrCat("must be in [1, ", L - 1, "] for self-speculative decoding, got ", o.exit_layer));
  if (q.speculation_case() == v1::GenerateRequest::kSpeculations) {
    if (q.speculations() < 0 || q.speculations() > 64)
      return Invalid("speculations", absl::StrCat("must be in [0, 64], got ", q.speculations()));
    o.speculation.speculations = q.speculations();
    o.speculation.adaptive = false;
    o.auto_speculations = false;
  } else if (q.speculation_case() == v1::GenerateRequest::kAutoSpeculations) {
    o.auto_speculations = q.auto_speculations();
    o.speculation.adaptive = false;
    if (o.speculation.speculations < 1) o.speculation.speculations = 4;
  }
  if (o.mode == DecodeMode::kAutoregressive) o.exit_layer = L;
  absl::Status s = ValidateDecodeOptions(o, L);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("speculations: ", s.message()));
  return spec;
}

}  // namespace layerskip::coordinator
