// RMSNorm on the device (the CPU op: kernels/rms_norm_cpu.cc). Per row, so batch-invariant by construction.
#include "kernels/cuda_device.cuh"
#include "kernels/rms_norm.h"

namespace layerskip::cuda {
namespace {

constexpr int kThreads = 256;

// grid: n, block: 256. x, y: [n, D] (may alias), w: [D].
// sum(x^2): thread t accumulates k = t, t+256, ... with fmaf in order, then BlockSum's fixed tree.
__global__ void RmsNormKernel(const float* x, const float* w, float* y, int64_t D, float eps) {
  __shared__ float shared[32];
  const float* xi = x + blockIdx.x * D;
  float* yi = y + blockIdx.x * D;
  float acc = 0.0f;
  for (int64_t k = threadIdx.x; k < D; k += kThreads) acc = fmaf(xi[k], xi[k], acc);
  const float ms = BlockSum(acc, shared) / static_cast<float>(D);
  const float inv = 1.0f / sqrtf(ms + eps);
  for (int64_t k = threadIdx.x; k < D; k += kThreads) yi[k] = w[k] * (xi[k] * inv);
}

}  // namespace

cudaError_t RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(x, w, y, D, eps);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
