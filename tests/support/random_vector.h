#pragma once
// Reproducible test data: n values ~ N(0, scale^2) from a fixed seed (the CPU kernel tests), and token ids
// (the decoding tests).
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/util/rng.h"

namespace layerskip::testing {

inline std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// n token ids in [0, vocab) from a fixed seed (splitmix64: the same on every platform).
inline std::vector<int> RandomIds(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back(static_cast<int>(rng.Next() % vocab));
  return ids;
}

}  // namespace layerskip::testing
