#pragma once
// Runs whole greedy or sampled requests for the decoding tests: prompts [n][len] -> generated ids [n][...].
#include <vector>

#include "engine/decode/generate.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"

namespace layerskip::testing {

// Decodes `prompts` as one batch with `o` on a fresh KV cache; each request stops at max_tokens or at an
// id of `eos`. The ids generated per prompt (empty on failure, which is reported); `stats` gets each
// request's speculation statistics.
inline std::vector<std::vector<int>> Decode(const LoadedModel& m, const std::vector<std::vector<int>>& prompts,
                                            const DecodeOptions& o, int max_tokens,
                                            std::vector<SpecStats>* stats = nullptr, std::vector<int> eos = {}) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, static_cast<int>(prompts.size()), m.context);
  std::vector<GenerationParams> params(prompts.size());
  for (auto& p : params) {
    p.max_tokens = max_tokens;
    p.eos_ids = eos;
  }
  auto r = GenerateBatch(*m.model, cache, prompts, params, o);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::vector<int>> ids;
  if (!r.ok()) return ids;
  for (auto& x : *r) {
    ids.push_back(x.ids);
    if (stats) stats->push_back(x.spec);
  }
  return ids;
}

}  // namespace layerskip::testing
