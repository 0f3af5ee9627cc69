#pragma once
// Shared helpers of the GPU tests: skip without a device, host <-> device copies that fail the test.
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
