#pragma once
// Runs whole greedy or sampled requests for the decoding tests: prompts [n][len] -> generated ids [n][...],
// through the Backend interface (the CPU backend over a LoadedModel, or any backend given).
#include <vector>

#include "engine/decode/generate.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"

namespace layerskip::testing {

// Decodes `prompts` as one batch with `o` on `backend` (slots 0..n-1, reset first); each request stops at
// max_tokens or at an id of `eos`. The ids generated per prompt (empty on failure, which is reported);
// `stats` gets each request's speculation statistics.
inline std::vector<std::vector<int>> Decode(Backend& backend, const std::vector<std::vector<int>>& prompts,
                                            const DecodeOptions& o, int max_tokens,
                                            std::vector<SpecStats>* stats = nullptr, std::vector<int> eos = {}) {
  std::vector<GenerationParams> params(prompts.size());
  for (auto& p : params) {
    p.max_tokens = max_tokens;
    p.eos_ids = eos;
  }
  auto r = GenerateBatch(backend, prompts, params, o);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::vector<int>> ids;
  if (!r.ok()) return ids;
  for (auto& x : *r) {
    ids.push_back(x.ids);
    if (stats) stats->push_back(x.spec);
  }
  return ids;
}

// The same on a fresh CPU backend over `m` (its model, a new KV cache of one slot per prompt).
inline std::vector<std::vector<int>> Decode(const LoadedModel& m, const std::vector<std::vector<int>>& prompts,
                                            const DecodeOptions& o, int max_tokens,
                                            std::vector<SpecStats>* stats = nullptr, std::vector<int> eos = {}) {
  CpuBackend backend(m.model.get(), static_cast<int>(prompts.size()), m.context);
  return Decode(backend, prompts, o, max_tokens, stats, std::move(eos));
}

}  // namespace layerskip::testing
