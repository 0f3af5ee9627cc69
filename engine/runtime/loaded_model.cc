#include "engine/runtime/loaded_model.h"

#include <algorithm>

#include "engine/util/status.h"

namespace layerskip {

std::unique_ptr<LoadedModel> WrapWeights(std::shared_ptr<const ModelWeights> weights, const ModelLoadOptions& options) {
  auto m = std::make_unique<LoadedModel>();
  m->context = std::max(2, std::min(options.max_context, weights->config.max_position_embeddings));
  m->pool = std::make_unique<ThreadPool>(options.threads);
  m->weights = std::move(weights);
  m->model = std::make_unique<Model>(m->weights, m->context, m->pool.get());
  return m;
}

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelDir(const std::filesystem::path& dir,
                                                          const ModelLoadOptions& options) {
  LoadOptions load;
  load.type = options.type;
  load.int8_layers = options.int8_layers;
  load.in_place = options.in_place;
  LS_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(dir, load));
  std::unique_ptr<Tokenizer> tokenizer;
  auto tok = LoadTokenizer(dir);
  if (tok.ok()) {
    tokenizer = std::move(tok).value();
  } else if (options.require_tokenizer || !absl::IsNotFound(tok.status())) {
    return tok.status();
  }
  auto m = WrapWeights(std::make_shared<const ModelWeights>(std::move(weights)), options);
  m->tokenizer = std::move(tokenizer);
  return m;
}

}  // namespace layerskip
