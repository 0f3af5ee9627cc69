// SwiGLU and the residual add on the device (the CPU op: kernels/swiglu_cpu.cc). Elementwise.
#include "kernels/cuda_device.cuh"
#include "kernels/swiglu.h"

namespace layerskip::cuda {
namespace {

// grid-stride over [count]: out = gate / (1 + exp(-gate)) * up, as the CPU op spells it.
__global__ void SwiGluKernel(const float* gate, const float* up, float* out, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// grid-stride over [count]: x += h.
__global__ void AddKernel(float* x, const float* h, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += h[i];
}

unsigned int Blocks(int64_t count) { return CeilDiv(count, 256) < 65535u ? CeilDiv(count, 256) : 65535u; }

}  // namespace

cudaError_t SwiGlu(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  SwiGluKernel<<<Blocks(count), 256, 0, stream>>>(gate, up, out, count);
  return cudaGetLastError();
}

cudaError_t AddInPlace(float* x, const float* h, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  AddKernel<<<Blocks(count), 256, 0, stream>>>(x, h, count);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
