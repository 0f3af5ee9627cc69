#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "engine/decode/cost_calibration.h"
#include "engine/decode/cost_model_cache.h"
#include "engine/decode/draft_vocabulary.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/runtime/checkpoint_dtype.h"
#include "engine/util/status.h"

namespace layerskip::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "layerskip %s: %s\n", command.c_str(), std::string(status.message()).c_str());
  return absl::IsInvalidArgument(status) && status.message().rfind("--", 0) == 0 ? 2 : 1;
}

absl::StatusOr<ModelLoadOptions> LoadOptionsFromFlags(const Flags& flags) {
  ModelLoadOptions o;
  const std::string dtype = flags.Get("dtype", "auto");
  if (dtype == "bf16") {
    o.type = WeightType::kBF16;
  } else if (dtype == "f32") {
    o.type = WeightType::kF32;
  } else if (dtype == "auto") {  // the checkpoint's own (config.json torch_dtype), as transformers' "auto"
    if (flags.Has("model")) {
      LS_ASSIGN_OR_RETURN(CheckpointDType d, CheckpointDTypeOf(flags.Get("model")));
      o.type = d.type;
      if (!d.notice.empty()) std::fprintf(stderr, "note: %s: %s\n", d.source.c_str(), d.notice.c_str());
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--dtype: '", dtype, "' is not auto, bf16 or f32"));
  }
  // --weights: the layers' matrices; int8 quantises them at load (docs/engine.md), bf16/f32 must match the dtype.
  const std::string dtype_name = WeightTypeName(o.type);
  const std::string weights = flags.Get("weights", dtype_name);
  o.in_place = !flags.Has("no-mmap");  // --no-mmap: private copies of every matrix (the pre-zero-copy path)
  if (weights == "int8") o.int8_layers = true;
  else if (weights != dtype_name)
    return absl::InvalidArgumentError(absl::StrCat("--weights: '", weights, "' is not int8 or the dtype (", dtype_name, ")"));
  LS_ASSIGN_OR_RETURN(int64_t threads, flags.GetInt("threads", 0));
  LS_ASSIGN_OR_RETURN(int64_t context, flags.GetInt("max-context", 4096));
  if (threads < 0 || threads > 1024) return absl::InvalidArgumentError("--threads must be in [0, 1024]");
  if (context < 2 || context > (1 << 20)) return absl::InvalidArgumentError("--max-context must be in [2, 1048576]");
  o.threads = static_cast<int>(threads);
  o.max_context = static_cast<int>(context);
  LS_ASSIGN_OR_RETURN(o.kv_positions, flags.GetInt("kv-cache-positions", 0));
  if (o.kv_positions < 0 || o.kv_positions > (int64_t{1} << 40))
    return absl::InvalidArgumentError("--kv-cache-positions must be in [0, 2^40] (0: slots x context)");
  LS_ASSIGN_OR_RETURN(o.gpu_memory_fraction, flags.GetDouble("gpu-memory-fraction", 0.0));
  if (flags.Has("gpu-memory-fraction")) {
    if (!(o.gpu_memory_fraction > 0 && o.gpu_memory_fraction <= 1))
      return absl::InvalidArgumentError("--gpu-memory-fraction must be in (0, 1]");
    if (flags.Get("device", "cpu").rfind("cuda", 0) != 0)
      return absl::InvalidArgumentError("--gpu-memory-fraction sizes a CUDA device's KV cache: it needs --device cuda[:N]");
  }
  return o;
}

absl::StatusOr<DeviceSpec> DeviceFromFlags(const Flags& flags) {
  auto device = DeviceSpec::Parse(flags.Get("device", "cpu"));
  if (!device.ok()) return absl::InvalidArgumentError(absl::StrCat("--", device.status().message()));
  LS_RETURN_IF_ERROR(CheckDevice(*device));
  return *device;
}

absl::StatusOr<std::unique_ptr<Backend>> BackendFromFlags(const Flags& flags, const LoadedModel& m,
                                                          const DeviceSpec& device, int num_slots) {
  LS_ASSIGN_OR_RETURN(int64_t kv_positions, flags.GetInt("kv-cache-positions", 0));
  LS_ASSIGN_OR_RETURN(double fraction, flags.GetDouble("gpu-memory-fraction", 0.0));
  return CreateBackend(m, device, num_slots, kv_positions, fraction);
}

absl::StatusOr<DecodeOptions> DecodeOptionsFromFlags(const Flags& flags, int num_layers) {
  DecodeOptions o;
  const std::string mode = flags.Get("mode", "autoregressive");
  if (mode == "autoregressive") o.mode = DecodeMode::kAutoregressive;
  else if (mode == "early-exit") o.mode = DecodeMode::kEarlyExit;
  else if (mode == "self-speculative") o.mode = DecodeMode::kSelfSpeculative;
  else return absl::InvalidArgumentError(absl::StrCat("--mode: unknown mode '", mode, "'"));
  const bool speculative = o.mode == DecodeMode::kSelfSpeculative;
  // Self-speculative decoding chooses E and d itself unless told (--exit-layer N, --speculations D).
  const std::string exit_layer = flags.Get("exit-layer", speculative ? "auto" : "");
  if (o.mode == DecodeMode::kEarlyExit && exit_layer.empty())
    return absl::InvalidArgumentError(absl::StrCat("--exit-layer is required with --mode ", mode));
  if (speculative && exit_layer == "auto") {
    o.auto_exit_layer = true;
  } else {
    LS_ASSIGN_OR_RETURN(int64_t e, flags.GetInt("exit-layer", num_layers));
    o.exit_layer = static_cast<int>(e);
  }
  const std::string spec = flags.Get("speculations", speculative && o.auto_exit_layer ? "auto" : "4");
  if (spec == "auto") {
    o.auto_speculations = speculative;
    o.speculation.speculations = 4;
  } else if (spec == "adaptive") {  // the per-sequence heuristic (confidence stop, length from acceptance)
    o.speculation.adaptive = true;
    o.speculation.speculations = 4;
  } else {
    LS_ASSIGN_OR_RETURN(int64_t d, flags.GetInt("speculations", 4));
    o.speculation.speculations = static_cast<int>(d);
  }
  LS_ASSIGN_OR_RETURN(int64_t max_d, flags.GetInt("max-speculations", 8));
  if (max_d < 1 || max_d > 64) return absl::InvalidArgumentError("--max-speculations must be in [1, 64]");
  o.policy.max_speculations = static_cast<int>(max_d);
  if (!o.automatic()) LS_RETURN_IF_ERROR(ValidateDecodeOptions(o, num_layers));
  return o;
}

absl::Status ApplyDraftVocabulary(const Flags& flags, LoadedModel& m, std::vector<int> corpus) {
  const int V = m.weights->config.vocab_size;
  if (flags.Has("draft-vocab")) {
    LS_ASSIGN_OR_RETURN(int64_t k, flags.GetInt("draft-vocab", 0));
    if (k < 0 || k > V) return absl::InvalidArgumentError(absl::StrCat("--draft-vocab must be in [0, ", V, "]"));
    if (flags.Has("draft-vocab-corpus")) {
      if (!m.tokenizer) return absl::InvalidArgumentError("--draft-vocab-corpus needs a model with a tokenizer");
      std::ifstream in(flags.Get("draft-vocab-corpus"));
      if (!in) return absl::InvalidArgumentError(absl::StrCat("--draft-vocab-corpus: cannot read ", flags.Get("draft-vocab-corpus")));
      std::stringstream text;
      text << in.rdbuf();
      corpus = m.tokenizer->Encode(text.str(), /*add_special_tokens=*/false);
    }
    if (k > 0 && k < V) {
      std::vector<int> always = m.weights->config.eos_token_ids;
      if (m.tokenizer)
        for (int id : m.tokenizer->eos_ids()) always.push_back(id);
      LS_ASSIGN_OR_RETURN(std::vector<int> ids, ChooseDraftVocabulary(V, static_cast<int>(k), corpus, always));
      LS_RETURN_IF_ERROR(m.model->SetDraftVocabulary(std::move(ids)));
    }
  } else if (flags.Has("draft-vocab-corpus")) {
    return absl::InvalidArgumentError("--draft-vocab-corpus needs --draft-vocab K");
  }
  return absl::OkStatus();
}

absl::Status AttachCostModel(const Flags& flags, const std::string& model_id, LoadedModel& m, DecodeOptions& decode,
                             bool want_cost, const DeviceSpec& device) {
  const int V = m.weights->config.vocab_size;
  if (!decode.automatic() && !want_cost) return absl::OkStatus();
  CostModelRequest request;
  LS_ASSIGN_OR_RETURN(request.calibration, ParseCalibration(flags.Get("calibration", "cached")));
  LS_ASSIGN_OR_RETURN(request.budget_seconds, flags.GetDouble("calibration-budget", 1.0));
  if (!(request.budget_seconds > 0 && request.budget_seconds <= 600))
    return absl::InvalidArgumentError("--calibration-budget must be in (0, 600] seconds");
  request.model_id = model_id;
  request.probe_tokens = DefaultProbeTokens(m.tokenizer.get(), V);
  request.device = device.ToString();
  std::unique_ptr<Backend> scratch;  // the GPU's own timings: a one-slot backend there while calibrating
  if (!device.is_cpu() && request.calibration != Calibration::kOff) {
    LS_ASSIGN_OR_RETURN(scratch, CreateBackend(m, device, 1));
  }
  LS_ASSIGN_OR_RETURN(CostModel cost, ObtainCostModel(*m.model, request, scratch.get()));
  decode.cost = std::make_shared<const CostModel>(std::move(cost));
  if (decode.automatic()) LS_RETURN_IF_ERROR(ValidateDecodeOptions(decode, m.weights->config.num_hidden_layers));
  return absl::OkStatus();
}

}  // namespace layerskip::cli
