#pragma once
// Shared helpers of the GPU tests: skip without a device, host <-> device copies that fail the test.
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda_common.h"

namespace layerskip::cuda::testing {

// Skips the calling test when there is no CUDA device (CPU-only CI with the CUDA code compiled).
#define LS_SKIP_WITHOUT_GPU()                                                      \
  do {                                                                             \
    if (::layerskip::cuda::DeviceCount() == 0) {                                   \
      GTEST_SKIP() << "no CUDA device";                                            \
    }                                                                              \
  } while (0)

// The repository root: $LAYERSKIP_SOURCE_DIR when set (binaries packed by tests/gpu/pack.sh run in another
// checkout), else the one they were built from.
inline std::filesystem::path SourceDir() {
  const char* env = std::getenv("LAYERSKIP_SOURCE_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(LAYERSKIP_SOURCE_DIR);
}

template <typename T>
DeviceBuffer<T> Up(const std::vector<T>& host) {
  auto b = DeviceBuffer<T>::FromHost(host);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : DeviceBuffer<T>();
}

template <typename T>
DeviceBuffer<T> Zeros(size_t n) {
  auto b = DeviceBuffer<T>::Alloc(n);
  EXPECT_TRUE(b.ok()) << b.status();
  if (b.ok() && n > 0) {
    EXPECT_EQ(cudaMemset(b->get(), 0, b->bytes()), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // before the engine's non-blocking streams read it
  }
  return b.ok() ? std::move(b).value() : DeviceBuffer<T>();
}

template <typename T>
std::vector<T> Down(const DeviceBuffer<T>& b) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto h = b.ToHost();
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() ? std::move(h).value() : std::vector<T>();
}

}  // namespace layerskip::cuda::testing
