// Token embedding lookup on the device (the CPU op: kernels/embedding_cpu.cc).
#include "kernels/cuda_device.cuh"
#include "kernels/embedding.h"

namespace layerskip::cuda {
namespace {

// grid: (n, ceil(D / 256)), block: 256. out[i, k] = table[ids[i], k] as f32 (exact).
template <typename W>
__global__ void EmbeddingKernel(const int* ids, const W* table, int64_t D, float* out) {
  const int64_t i = blockIdx.x;
  const int64_t k = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (k < D) out[i * D + k] = LoadOne(table, static_cast<int64_t>(ids[i]) * D + k);
}

}  // namespace

cudaError_t Embedding(const int* ids, int64_t n, const DeviceWeight& table, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(n), CeilDiv(table.cols, 256));
  if (table.type == DType::kBF16)
    EmbeddingKernel<<<grid, 256, 0, stream>>>(ids, static_cast<const uint16_t*>(table.data), table.cols, out);
  else
    EmbeddingKernel<<<grid, 256, 0, stream>>>(ids, static_cast<const float*>(table.data), table.cols, out);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
