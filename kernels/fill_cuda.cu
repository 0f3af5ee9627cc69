// Device-side fills for benchmarks and tests: random weights without a host copy, and a read-bandwidth probe.
#include "kernels/cuda_device.cuh"
#include "kernels/fill.h"

namespace layerskip::cuda {
namespace {

// splitmix64 of (seed, index): a counter-based generator, so any launch shape gives the same values.
__device__ __forceinline__ uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// grid-stride over [count]: Box-Muller normal from two 24-bit uniforms, times scale; bf16 round to nearest even.
template <typename T>
__global__ void FillRandomKernel(T* data, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = Mix(seed * 0x100000001b3ull + static_cast<uint64_t>(i));
    const float u1 = (static_cast<float>(r >> 40) + 1.0f) * (1.0f / 16777217.0f);
    const float u2 = static_cast<float>((r >> 16) & 0xffffffu) * (1.0f / 16777216.0f);
    const float value = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2) * scale;
    if constexpr (sizeof(T) == 2) {
      uint32_t u = __float_as_uint(value);
      u += 0x7fffu + ((u >> 16) & 1u);
      data[i] = static_cast<uint16_t>(u >> 16);
    } else {
      data[i] = value;
    }
  }
}

__global__ void FillConstantKernel(float* data, int64_t count, float value) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    data[i] = value;
}

// grid-stride over [words] 16-byte words: xor-free sum of all 32-bit values, one atomicAdd per block.
__global__ void ReadProbeKernel(const uint4* src, int64_t words, unsigned int* out) {
  __shared__ unsigned int shared[32];
  unsigned int acc = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint4 v = src[i];
    acc += v.x + v.y + v.z + v.w;
  }
  acc = BlockSum(acc, shared);
  if (threadIdx.x == 0) atomicAdd(out, acc);
}

}  // namespace

cudaError_t FillRandom(DType type, void* data, int64_t count, uint64_t seed, float scale, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const unsigned int blocks = 4096;
  if (type == DType::kBF16)
    FillRandomKernel<<<blocks, 256, 0, stream>>>(static_cast<uint16_t*>(data), count, seed, scale);
  else
    FillRandomKernel<<<blocks, 256, 0, stream>>>(static_cast<float*>(data), count, seed, scale);
  return cudaGetLastError();
}

cudaError_t FillConstant(float* data, int64_t count, float value, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FillConstantKernel<<<1024, 256, 0, stream>>>(data, count, value);
  return cudaGetLastError();
}

cudaError_t ReadBandwidthProbe(const void* src, int64_t bytes, unsigned int* out, cudaStream_t stream) {
  const cudaError_t err = cudaMemsetAsync(out, 0, sizeof(unsigned int), stream);
  if (err != cudaSuccess) return err;
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  ReadProbeKernel<<<static_cast<unsigned int>(sms * 8), 512, 0, stream>>>(static_cast<const uint4*>(src), bytes / 16,
                                                                        out);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
