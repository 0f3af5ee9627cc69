#include <cstdio>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "engine/util/status.h"

namespace layerskip::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "layerskip %s: %s\n", command.c_str(), std::string(status.message()).c_str());
  return absl::IsInvalidArgument(status) && status.message().rfind("--", 0) == 0 ? 2 : 1;
}

absl::StatusOr<ModelLoadOptions> LoadOptionsFromFlags(const Flags& flags) {
  ModelLoadOptions o;
  const std::string dtype = flags.Get("dtype", "bf16");
  if (dtype == "bf16") o.type = WeightType::kBF16;
  else if (dtype == "f32") o.type = WeightType::kF32;
  else return absl::InvalidArgumentError(absl::StrCat("--dtype: '", dtype, "' is not bf16 or f32"));
  LS_ASSIGN_OR_RETURN(int64_t threads, flags.GetInt("threads", 0));
  LS_ASSIGN_OR_RETURN(int64_t context, flags.GetInt("max-context", 4096));
  if (threads < 0 || threads > 1024) return absl::InvalidArgumentError("--threads must be in [0, 1024]");
  if (context < 2 || context > (1 << 20)) return absl::InvalidArgumentError("--max-context must be in [2, 1048576]");
  o.threads = static_cast<int>(threads);
  o.max_context = static_cast<int>(context);
  return o;
}

absl::StatusOr<DecodeOptions> DecodeOptionsFromFlags(const Flags& flags, int num_layers) {
  DecodeOptions o;
  const std::string mode = flags.Get("mode", "autoregressive");
  if (mode == "autoregressive") o.mode = DecodeMode::kAutoregressive;
  else if (mode == "early-exit") o.mode = DecodeMode::kEarlyExit;
  else if (mode == "self-speculative") o.mode = DecodeMode::kSelfSpeculative;
  else return absl::InvalidArgumentError(absl::StrCat("--mode: unknown mode '", mode, "'"));
  if (o.mode != DecodeMode::kAutoregressive && !flags.Has("exit-layer"))
    return absl::InvalidArgumentError(absl::StrCat("--exit-layer is required with --mode ", mode));
  LS_ASSIGN_OR_RETURN(int64_t exit_layer, flags.GetInt("exit-layer", num_layers));
  o.exit_layer = static_cast<int>(exit_layer);
  const std::string spec = flags.Get("speculations", "4");
  if (spec == "auto") {
    o.speculation.adaptive = true;
    o.speculation.speculations = 4;
  } else {
    LS_ASSIGN_OR_RETURN(int64_t d, flags.GetInt("speculations", 4));
    o.speculation.speculations = static_cast<int>(d);
  }
  LS_RETURN_IF_ERROR(ValidateDecodeOptions(o, num_layers));
  return o;
}

}  // namespace layerskip::cli
