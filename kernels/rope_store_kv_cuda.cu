// The fused QKV epilogue (after one Gemv over the concatenated [q; k; v] weights): RoPE on q and k, q to its
// own buffer for the attention kernels, k and v into the KV cache. Each element is computed exactly as
// ApplyRope (rope_cuda.cu) then StoreKv (attention_cuda.cu) compute it, so the fused and unfused layers
// are bitwise equal (tests/gpu/cuda_ops_test.cc).
#include "kernels/cuda_device.cuh"
#include "kernels/rope.h"

namespace layerskip::cuda {
namespace {

constexpr int kThreads = 256;

// grid: n, block: 256. Token i: pairs (d, d + half) of the heads + kv_heads rotated heads, then the v copy.
__global__ void RopeStoreKvKernel(const float* qkv, int heads, const int* slots, const int* positions,
                                  const float* cos, const float* sin, float* q_out, KvLayerView kv) {
  const int i = blockIdx.x, hd = kv.head_dim, half = hd / 2, kvh = kv.kv_heads;
  const int q_dim = heads * hd, kv_dim = kvh * hd;
  const float* row = qkv + static_cast<int64_t>(i) * (q_dim + 2 * kv_dim);
  const int64_t pos = positions[i];
  const int64_t dst = slots[i] * kv.slot_stride + pos * kv_dim;
  const bool bf16 = kv.dtype == DType::kBF16;
  const float* cs = cos + pos * half;
  const float* sn = sin + pos * half;
  // Rotations: (heads + kv_heads) * half pairs; rotated q heads first, then k heads.
  for (int idx = threadIdx.x; idx < (heads + kvh) * half; idx += kThreads) {
    const int h = idx / half, d = idx % half;
    const float c = cs[d], s = sn[d];
    const float a = row[h * hd + d], b = row[h * hd + d + half];  // k head h - heads sits at q_dim + ...
    const float lo = a * c - b * s, hi = b * c + a * s;            // as RopeKernel
    if (h < heads) {
      float* qo = q_out + (static_cast<int64_t>(i) * heads + h) * hd;
      qo[d] = lo;
      qo[d + half] = hi;
    } else {
      const int64_t e = static_cast<int64_t>(h - heads) * hd;
      StoreKvValue(kv.k, dst + e + d, lo, bf16);
      StoreKvValue(kv.k, dst + e + d + half, hi, bf16);
    }
  }
  const float* v = row + q_dim + kv_dim;
  for (int e = threadIdx.x; e < kv_dim; e += kThreads) StoreKvValue(kv.v, dst + e, v[e], bf16);
}

}  // namespace

cudaError_t RopeStoreKv(const float* qkv, int64_t n, int heads, const int* slots, const int* positions,
                        const float* cos, const float* sin, float* q_out, const KvLayerView& kv, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (kv.head_dim % 2 != 0 || kv.kv_heads <= 0) return cudaErrorInvalidValue;
  RopeStoreKvKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(qkv, heads, slots, positions, cos, sin,
                                                                          q_out, kv);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
