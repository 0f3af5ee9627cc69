// Rotary position embedding on the device (the CPU op: kernels/rope_cpu.cc). With the CPU table's cos/sin
// and -fmad=false the rotation is bitwise the CPU one.
#include "kernels/cuda_device.cuh"
#include "kernels/rope.h"

namespace layerskip::cuda {
namespace {

// grid: (n, ceil(heads*half / 256)), block: 256. v: [n, heads, head_dim], pairs (i, i + half) rotated by
// the angle of (positions[token], i); cos, sin: [max_positions, half].
__global__ void RopeKernel(float* v, int heads, int head_dim, const int* positions, const float* cos,
                           const float* sin) {
  const int half = head_dim / 2;
  const int idx = blockIdx.y * blockDim.x + threadIdx.x;
  if (idx >= heads * half) return;
  const int h = idx / half, i = idx % half;
  const int64_t pos = positions[blockIdx.x];
  const float c = cos[pos * half + i], s = sin[pos * half + i];
  float* x = v + (static_cast<int64_t>(blockIdx.x) * heads + h) * head_dim;
  const float a = x[i], b = x[i + half];
  x[i] = a * c - b * s;
  x[i + half] = b * c + a * s;
}

}  // namespace

cudaError_t ApplyRope(float* v, int64_t n, int heads, int head_dim, const int* positions, const float* cos,
                      const float* sin, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(n), CeilDiv(heads * (head_dim / 2), 256));
  RopeKernel<<<grid, 256, 0, stream>>>(v, heads, head_dim, positions, cos, sin);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
