#include "engine/runtime/loaded_model.h"

#include <algorithm>

#include "engine/util/status.h"
#include "kernels/cpu_features.h"

namespace layerskip {

void ChooseCpuKernelsFor(const ModelWeights& weights) {
  const bool bf16_matmuls = weights.type == WeightType::kBF16 && !weights.int8_layers;
  cpu::ChooseCpuKernelsForModel(bf16_matmuls ? static_cast<int64_t>(weights.bytes()) : 0);
}

std::unique_ptr<LoadedModel> WrapWeights(std::shared_ptr<const ModelWeights> weights, const ModelLoadOptions& options) {
  ChooseCpuKernelsFor(*weights);
  auto m = std::make_unique<LoadedModel>();
  m->context = std::max(2, std::min(options.max_context, weights->config.max_position_embeddings));
  m->pool = std::make_unique<ThreadPool>(options.threads);
  m->weights = std::move(weights);
  m->config = m->weights->config;
  m->model = std::make_unique<Model>(m->weights, m->context, m->pool.get());
  return m;
}

namespace {

// The directory's tokenizer; null when it has none (unless required).
absl::StatusOr<std::unique_ptr<Tokenizer>> OptionalTokenizer(const std::filesystem::path& dir, bool required) {
  auto tok = LoadTokenizer(dir);
  if (tok.ok()) return std::move(tok).value();
  if (required || !absl::IsNotFound(tok.status())) return tok.status();
  return std::unique_ptr<Tokenizer>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelDir(const std::filesystem::path& dir,
                                                          const ModelLoadOptions& options) {
  LS_RETURN_IF_ERROR(cpu::CheckCpuKernels());  // a forced kernel path this CPU lacks: a clear error first
  LoadOptions load;
  load.type = options.type;
  load.int8_layers = options.int8_layers;
  load.in_place = options.in_place;
  LS_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(dir, load));
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, OptionalTokenizer(dir, options.require_tokenizer));
  auto m = WrapWeights(std::make_shared<const ModelWeights>(std::move(weights)), options);
  m->tokenizer = std::move(tokenizer);
  return m;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelConfigAndTokenizer(const std::filesystem::path& dir,
                                                                         const ModelLoadOptions& options) {
  auto m = std::make_unique<LoadedModel>();
  LS_ASSIGN_OR_RETURN(m->config, LoadLlamaConfig(dir));
  LS_ASSIGN_OR_RETURN(m->tokenizer, OptionalTokenizer(dir, options.require_tokenizer));
  m->context = std::max(2, std::min(options.max_context, m->config.max_position_embeddings));
  return m;
}

}  // namespace layerskip
