#pragma once
// Helpers of the GPU model tests: test data, and the logits of one sequence run through a CudaModel.
#include <vector>

#include "absl/types/span.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "engine/util/rng.h"
#include "gtest/gtest.h"
#include "tests/gpu/cuda_test_util.h"

namespace layerskip::cuda::testing {

// n values uniform in [-1.7, 1.7) * scale (variance ~1 at scale 1) from a fixed seed.
inline std::vector<float> RandomVector(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Uniform() * 2.0 - 1.0) * 1.7f * scale;
  return v;
}

// n token ids uniform in [0, vocab) from a fixed seed.
inline std::vector<int> RandomIds(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> ids(n);
  for (int& id : ids) id = static_cast<int>(rng.Next() % vocab);
  return ids;
}

// logits[ids.size(), V] of one sequence in slot 0 of a fresh cache (K/V of type kv): the first `prefill`
// ids in one call, then one id per call.
inline std::vector<float> GpuLogits(CudaModel& m, const std::vector<int>& ids, int prefill, DType kv = DType::kF32) {
  const LlamaConfig& c = m.config();
  auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 256, kv);
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (!cache.ok()) return {};
  auto x = Zeros<float>(ids.size() * c.hidden_size);
  auto logits = Zeros<float>(ids.size() * c.vocab_size);
  for (int begin = 0; begin < static_cast<int>(ids.size());) {
    const int n = begin == 0 ? prefill : 1;
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(0, begin + i);
    EXPECT_TRUE(m.Embed(absl::MakeConstSpan(ids).subspan(begin, n), x.get()).ok());
    const absl::Status s = m.Forward(0, c.num_hidden_layers, b, x.get(), cache->get());
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(m.ExitHead(x.get(), n, logits.get() + static_cast<size_t>(begin) * c.vocab_size).ok());
    begin += n;
  }
  return Down(logits);
}

}  // namespace layerskip::cuda::testing
