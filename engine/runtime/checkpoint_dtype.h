#pragma once
// The weight type a checkpoint runs in when no --dtype is given: its own, as transformers' torch_dtype="auto".
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace layerskip {

struct CheckpointDType {
  WeightType type = WeightType::kBF16;
  std::string source;  // what decided it, e.g. "config.json torch_dtype bfloat16"
  std::string notice;  // non-empty when the checkpoint's dtype does not run as is (float16 -> bf16)
};

// From config.json's torch_dtype (or "dtype"): float32 -> f32, bfloat16 -> bf16, float16 -> bf16 with a notice
// (the engine has no f16 weights; bf16 keeps the memory, --dtype f32 is exact). `stored` is the dtype name of
// the checkpoint's first tensor ("F32", "BF16", "F16"; safetensors spelling), used when config.json names
// none. Any other value: InvalidArgument naming it and the --dtype flag.
absl::StatusOr<CheckpointDType> ResolveCheckpointDType(const LlamaConfig& config, const std::string& stored);

// The same for a checkpoint directory: reads config.json and, when it names no dtype, the safetensors headers.
absl::StatusOr<CheckpointDType> CheckpointDTypeOf(const std::filesystem::path& dir);

}  // namespace layerskip
