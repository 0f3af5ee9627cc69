// layerskip generate: one prompt, one completion, optional JSON with statistics.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "engine/decode/output_processor.h"
#include "engine/util/status.h"
#include "nlohmann/json.hpp"

namespace layerskip::cli {
namespace {

nlohmann::json SpecJson(const SpecStats& s) {
  return {{"rounds", s.rounds},
          {"drafted", s.drafted},
          {"accepted", s.accepted},
          {"acceptance_rate", s.acceptance_rate()},
          {"tokens_per_round", s.tokens_per_round()},
          {"drafted_per_position", s.drafted_per_position},
          {"accepted_per_position", s.accepted_per_position},
          {"draft_seconds", s.draft_seconds},
          {"verify_seconds", s.verify_seconds}};
}

// Automatic speculation: the steps per (E, d) chosen (d = 0: autoregressive) and the last prediction.
nlohmann::json PolicyJson(const SpecStats& s, const DecodeOptions& decode) {
  nlohmann::json choices = nlohmann::json::array();
  for (const auto& [choice, steps] : s.steps_by_choice)
    choices.push_back({{"exit_layer", choice.first}, {"speculations", choice.second}, {"steps", steps}});
  return {{"choices", choices},
          {"predicted_speedup", s.predicted_speedup},
          {"cost_model", decode.cost ? decode.cost->source : ""}};
}

absl::Status Generate(const Flags& flags) {
  if (!flags.Has("model")) return absl::InvalidArgumentError("--model DIR is required");
  if (flags.Has("prompt") == flags.Has("prompt-ids"))
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  LS_ASSIGN_OR_RETURN(const DeviceSpec device, DeviceFromFlags(flags));
  LS_ASSIGN_OR_RETURN(ModelLoadOptions load, LoadOptionsFromFlags(flags));
  // --kv-cache-positions N: no sequence holds more than N positions (each slot's cache is that long).
  if (load.kv_positions > 0) load.max_context = static_cast<int>(std::min<int64_t>(load.max_context, std::max<int64_t>(2, load.kv_positions)));
  load.require_tokenizer = flags.Has("prompt") || flags.Has("stop");
  LS_ASSIGN_OR_RETURN(auto m, LoadModelDir(flags.Get("model"), load));
  const LlamaConfig& config = m->weights->config;
  LS_ASSIGN_OR_RETURN(DecodeOptions decode, DecodeOptionsFromFlags(flags, config.num_hidden_layers));
  LS_RETURN_IF_ERROR(ApplyDraftVocabulary(flags, *m));
  LS_RETURN_IF_ERROR(AttachCostModel(flags, std::filesystem::absolute(flags.Get("model")).string(), *m, decode,
                                     /*want_cost=*/false, device));

  std::vector<int> prompt;
  if (flags.Has("prompt")) {
    prompt = m->tokenizer->Encode(flags.Get("prompt"), /*add_special_tokens=*/true);
  } else {
    LS_ASSIGN_OR_RETURN(prompt, ParseIntList(flags.Get("prompt-ids"), "--prompt-ids"));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");

  GenerationParams params;
  LS_ASSIGN_OR_RETURN(int64_t max_tokens, flags.GetInt("max-tokens", 64));
  LS_ASSIGN_OR_RETURN(double temperature, flags.GetDouble("temperature", 0.0));
  LS_ASSIGN_OR_RETURN(int64_t top_k, flags.GetInt("top-k", 0));
  LS_ASSIGN_OR_RETURN(double top_p, flags.GetDouble("top-p", 1.0));
  LS_ASSIGN_OR_RETURN(int64_t seed, flags.GetInt("seed", 0));
  if (max_tokens <= 0) return absl::InvalidArgumentError("--max-tokens must be positive");
  if (temperature < 0) return absl::InvalidArgumentError("--temperature must be >= 0");
  if (top_k < 0) return absl::InvalidArgumentError("--top-k must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) return absl::InvalidArgumentError("--top-p must be in (0, 1]");
  params.max_tokens = static_cast<int>(std::min<int64_t>(max_tokens, 1 << 24));
  params.sampling.temperature = static_cast<float>(temperature);
  params.sampling.top_k = static_cast<int>(top_k);
  params.sampling.top_p = static_cast<float>(top_p);
  params.seed = static_cast<uint64_t>(seed);
  if (!flags.Has("ignore-eos")) {
    params.eos_ids = config.eos_token_ids;
    if (m->tokenizer)
      for (int id : m->tokenizer->eos_ids())
        if (std::find(params.eos_ids.begin(), params.eos_ids.end(), id) == params.eos_ids.end()) params.eos_ids.push_back(id);
  }
  const StopStrings stops(flags.GetAll("stop"));
  const Tokenizer* tok = m->tokenizer.get();
  if (!stops.empty()) params.stop_check = MakeStopCheck(tok, stops);

  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, BackendFromFlags(flags, *m, device, /*num_slots=*/1));
  LS_ASSIGN_OR_RETURN(auto results, GenerateBatch(*backend, {prompt}, {params}, decode));
  const GenerateResult& r = results[0];
  // The same output processing as the service's streams: the text ends before the first stop string.
  const std::string text = OutputProcessor(tok, stops).Feed(r.ids, /*finished=*/true);
  const double tps = r.decode_seconds > 0 ? (r.ids.size() - 1) / r.decode_seconds : 0.0;
  if (flags.Has("json")) {
    nlohmann::json out = {{"prompt_ids", prompt},
                          {"ids", r.ids},
                          {"text", text},
                          {"finish_reason", FinishReasonName(r.finish_reason)},
                          {"mode", DecodeModeName(decode.mode)},
                          {"stats",
                           {{"prompt_tokens", prompt.size()},
                            {"generated_tokens", r.ids.size()},
                            {"prefill_seconds", r.prefill_seconds},
                            {"decode_seconds", r.decode_seconds},
                            {"tokens_per_second", tps}}}};
    if (decode.mode != DecodeMode::kAutoregressive) out["exit_layer"] = decode.exit_layer;
    if (decode.mode == DecodeMode::kSelfSpeculative) {
      out["speculations"] = decode.speculation.adaptive ? nlohmann::json("adaptive") : nlohmann::json(decode.speculation.speculations);
      if (decode.automatic()) {  // the E and d used most (0, 0: every step was autoregressive)
        const auto [e, d] = r.spec.MostUsedChoice();
        if (decode.auto_exit_layer) out["exit_layer"] = e;
        if (decode.auto_speculations) out["speculations"] = d;
        out["exit_layer_requested"] = decode.auto_exit_layer ? nlohmann::json("auto") : nlohmann::json(decode.exit_layer);
        out["speculations_requested"] = decode.auto_speculations ? nlohmann::json("auto") : nlohmann::json(decode.speculation.speculations);
        out["stats"]["policy"] = PolicyJson(r.spec, decode);
      }
      out["stats"]["speculation"] = SpecJson(r.spec);
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    if (tok) std::cout << text << std::endl;
    else {
      for (size_t i = 0; i < r.ids.size(); ++i) std::cout << (i ? "," : "") << r.ids[i];
      std::cout << std::endl;
    }
    std::fprintf(stderr, "[%s] %zu prompt tokens, %zu generated (%s), prefill %.3f s, decode %.2f tokens/s",
                 DecodeModeName(decode.mode), prompt.size(), r.ids.size(), FinishReasonName(r.finish_reason),
                 r.prefill_seconds, tps);
    if (decode.mode == DecodeMode::kSelfSpeculative)
      std::fprintf(stderr, ", acceptance %.1f%%, %.2f tokens/round", 100 * r.spec.acceptance_rate(), r.spec.tokens_per_round());
    if (decode.automatic()) {
      const auto [e, d] = r.spec.MostUsedChoice();
      std::fprintf(stderr, ", mostly E=%d d=%d (predicted %.2fx)", e, d, r.spec.predicted_speedup);
    }
    std::fprintf(stderr, "\n");
  }
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2,
                            {"model", "prompt", "prompt-ids", "max-tokens", "temperature", "top-k", "top-p", "seed",
                             "mode", "exit-layer", "speculations", "max-speculations", "calibration", "calibration-budget",
                             "draft-vocab", "draft-vocab-corpus", "dtype", "weights", "threads", "max-context", "kv-cache-positions", "gpu-memory-fraction", "device"},
                            {"json", "ignore-eos", "no-mmap"}, {"stop"});
  if (!flags.ok()) return Fail("generate", flags.status());
  absl::Status s = Generate(*flags);
  return s.ok() ? 0 : Fail("generate", s);
}

}  // namespace layerskip::cli
