#include "engine/runtime/checkpoint_dtype.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/model/safetensors.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

// "float32" / "torch.float32" / "F32" ... -> f32 | bf16 | f16 | "" (unknown).
std::string Canonical(std::string name) {
  name = absl::AsciiStrToLower(name);
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  if (name == "float32" || name == "float" || name == "f32" || name == "fp32") return "f32";
  if (name == "bfloat16" || name == "bf16") return "bf16";
  if (name == "float16" || name == "half" || name == "f16" || name == "fp16") return "f16";
  return "";
}

}  // namespace

absl::StatusOr<CheckpointDType> ResolveCheckpointDType(const LlamaConfig& config, const std::string& stored) {
  CheckpointDType d;
  std::string kind;
  if (!config.torch_dtype.empty()) {
    kind = Canonical(config.torch_dtype);
    d.source = absl::StrCat("config.json torch_dtype ", config.torch_dtype);
    if (kind.empty())
      return absl::InvalidArgumentError(absl::StrCat("config.json torch_dtype '", config.torch_dtype.substr(0, 64),
                                                     "' is not float32, bfloat16 or float16: pass --dtype bf16|f32"));
  } else if (!stored.empty()) {
    kind = Canonical(stored);
    d.source = absl::StrCat("the stored weights (", stored, "; config.json names no torch_dtype)");
    if (kind.empty())
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint's weights are ", stored.substr(0, 64),
                                                     ", not F32, BF16 or F16: pass --dtype bf16|f32"));
  } else {
    kind = "bf16";
    d.source = "the default (no torch_dtype in config.json, no weights read)";
  }
  if (kind == "f32") {
    d.type = WeightType::kF32;
  } else {
    d.type = WeightType::kBF16;
    if (kind == "f16")
      d.notice = "float16 weights run as bf16 (--dtype f32 keeps them exactly)";
  }
  return d;
}

absl::StatusOr<CheckpointDType> CheckpointDTypeOf(const std::filesystem::path& dir) {
  LS_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(dir));
  std::string stored;
  if (config.torch_dtype.empty()) {
    LS_ASSIGN_OR_RETURN(auto files, CheckpointFiles::Open(dir));
    for (const TensorView* t : files->All()) {
      stored = DTypeName(t->dtype);
      break;
    }
  }
  return ResolveCheckpointDType(config, stored);
}

}  // namespace layerskip
