#pragma once
// Reproducible test data for the CPU kernel tests: n values ~ N(0, scale^2) from a fixed seed.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace layerskip::testing {

inline std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

}  // namespace layerskip::testing
