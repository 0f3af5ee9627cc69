#pragma once
// A model directory loaded for serving: weights, tokenizer (when the directory has one), threads, forward.
#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/model/weights.h"
#include "engine/runtime/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/thread_pool.h"

namespace layerskip {

struct LoadedModel {
  LlamaConfig config;                    // config.json (also weights->config when there are weights)
  std::shared_ptr<const ModelWeights> weights;  // null from LoadModelConfigAndTokenizer
  std::unique_ptr<Tokenizer> tokenizer;  // null when the directory has no tokenizer
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> model;
  int context = 0;  // positions per sequence
};

struct ModelLoadOptions {
  WeightType type = WeightType::kBF16;
  bool int8_layers = false;    // --weights int8: the layers' matrices quantised at load
  bool in_place = true;        // bf16/f32 matrices used in place from the checkpoint's memory map
  int threads = 0;             // 0: all cores
  int max_context = 4096;      // capped by the model's max_position_embeddings
  bool require_tokenizer = false;
  // KV-cache sizing (engine/runtime/kv_budget.h): --kv-cache-positions (0: slots x context) and
  // --gpu-memory-fraction (0: the planner's default; a CUDA device only).
  int64_t kv_positions = 0;
  double gpu_memory_fraction = 0;
};

// Loads `dir` (config.json, safetensors, tokenizer). Errors name the file and field.
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelDir(const std::filesystem::path& dir,
                                                          const ModelLoadOptions& options);

// config.json and the tokenizer only: no weights, pool or Model (a pipeline's coordinator computes nothing).
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelConfigAndTokenizer(const std::filesystem::path& dir,
                                                                         const ModelLoadOptions& options);

// Wraps weights already in memory (random models for benchmarks and tests).
std::unique_ptr<LoadedModel> WrapWeights(std::shared_ptr<const ModelWeights> weights, const ModelLoadOptions& options);

// Fixes the process's CPU kernel paths for these weights (kernels/cpu_features.h ChooseCpuKernelsForModel:
// on an AMX host, AMX for prompt tokens of bf16 weights, and for generated tokens too when their bf16
// matrices exceed the last-level cache) unless a pair is already fixed. WrapWeights and
// the worker's shard loading call it before any matmul runs.
void ChooseCpuKernelsFor(const ModelWeights& weights);

}  // namespace layerskip
