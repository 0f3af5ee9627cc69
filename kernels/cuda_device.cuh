#pragma once
// Device helpers shared by the kernels/*_cuda.cu files. Every reduction has one fixed order.
#include <cuda_runtime.h>

#include <cstdint>

namespace layerskip::cuda {

constexpr int kWarp = 32;

// bf16 (raw bits) -> f32, exact.
__device__ __forceinline__ float Bf16ToF32(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

// f32 -> bf16 bits, round to nearest even, NaN kept quiet: bitwise the host F32ToBf16 (engine/util/bf16.h).
__device__ __forceinline__ uint16_t F32ToBf16Bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}


// Element i of a KV cache buffer (f32, or bf16 bits when bf16) as f32, exactly.
__device__ __forceinline__ float LoadKv(const void* p, int64_t i, bool bf16) {
  return bf16 ? Bf16ToF32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
// Stores v at element i of a KV cache buffer, rounded once to bf16 when bf16.
__device__ __forceinline__ void StoreKvValue(void* p, int64_t i, float v, bool bf16) {
  if (bf16) static_cast<uint16_t*>(p)[i] = F32ToBf16Bits(v);
  else static_cast<float*>(p)[i] = v;
}

// Loads 8 consecutive weights starting at element `index` (index a multiple of 8) as f32.
__device__ __forceinline__ void Load8(const uint16_t* p, int64_t index, float (&out)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p + index);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(w[i] << 16);
    out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void Load8(const float* p, int64_t index, float (&out)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p + index);
  const float4 b = *reinterpret_cast<const float4*>(p + index + 4);
  out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
  out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}
__device__ __forceinline__ float LoadOne(const uint16_t* p, int64_t index) { return Bf16ToF32(p[index]); }
__device__ __forceinline__ float LoadOne(const float* p, int64_t index) { return p[index]; }

// Butterfly sum over the 32 lanes: offsets 16, 8, 4, 2, 1. Float addition is commutative, so every lane
// ends with the same bits.
template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024): a warp butterfly, then warp 0
// adds the warp sums in warp order. Every thread gets the result. `shared` holds 32 values.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = WarpSum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    T total = shared[0];
    for (int w = 1; w < warps; ++w) total += shared[w];
    shared[0] = total;
  }
  __syncthreads();
  return shared[0];
}

__device__ __forceinline__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = shared[0];
    for (int w = 1; w < warps; ++w) m = fmaxf(m, shared[w]);
    shared[0] = m;
  }
  __syncthreads();
  return shared[0];
}

inline unsigned int CeilDiv(int64_t a, int64_t b) { return static_cast<unsigned int>((a + b - 1) / b); }

}  // namespace layerskip::cuda
