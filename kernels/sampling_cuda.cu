// Token choice on the device (the CPU ops: kernels/sampling_cpu.cc): argmax, temperature softmax, and the
// inverse-CDF draw. top-k / top-p need a sort and stay on the host (docs/cuda.md).
#include <cfloat>

#include "kernels/cuda_device.cuh"
#include "kernels/sampling.h"

namespace layerskip::cuda {
namespace {

constexpr int kThreads = 256;

// Is (v2, i2) a better argmax than (v1, i1)? Larger value, or the same value at a smaller index.
__device__ __forceinline__ bool Better(float v2, int i2, float v1, int i1) { return v2 > v1 || (v2 == v1 && i2 < i1); }

// grid: n, block: 256. ids[row] = argmax of logits[row, :V], the first index on ties (as the CPU op).
__global__ void ArgmaxKernel(const float* logits, int64_t V, int* ids) {
  __shared__ float best_v[kThreads];
  __shared__ int best_i[kThreads];
  const float* row = logits + blockIdx.x * V;
  float bv = -INFINITY;
  int bi = static_cast<int>(V);  // "none yet": loses every tie
  for (int64_t i = threadIdx.x; i < V; i += kThreads)
    if (Better(row[i], static_cast<int>(i), bv, bi)) {
      bv = row[i];
      bi = static_cast<int>(i);
    }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride && Better(best_v[threadIdx.x + stride], best_i[threadIdx.x + stride], best_v[threadIdx.x],
                                       best_i[threadIdx.x])) {
      best_v[threadIdx.x] = best_v[threadIdx.x + stride];
      best_i[threadIdx.x] = best_i[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = best_i[0] < V ? best_i[0] : 0;  // all NaN: 0, as the CPU op
}

// grid: n, block: 256. probs[row] = exp(l/T - max) / sum, the sum in double (as the CPU op).
__global__ void SoftmaxKernel(const float* logits, int64_t V, float inv_t, float* probs) {
  __shared__ float fshared[32];
  __shared__ double dshared[32];
  const float* row = logits + blockIdx.x * V;
  float* out = probs + blockIdx.x * V;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) mx = fmaxf(mx, row[i] * inv_t);
  mx = BlockMax(mx, fshared);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float e = expf(row[i] * inv_t - mx);
    out[i] = e;
    sum += e;
  }
  sum = BlockSum(sum, dshared);
  for (int64_t i = threadIdx.x; i < V; i += kThreads) out[i] = static_cast<float>(out[i] / sum);
}

// grid: n, block: 256. Thread t sums the contiguous segment [t*seg, (t+1)*seg) in double; thread 0 walks
// the segment sums to the one holding u * total, then that segment's elements.
__global__ void SampleKernel(const float* probs, int64_t V, const double* u, int* ids) {
  __shared__ double seg_sum[kThreads];
  __shared__ int64_t seg_last[kThreads];
  const float* row = probs + blockIdx.x * V;
  const int64_t seg = (V + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * seg, end = begin + seg < V ? begin + seg : V;
  double s = 0.0;
  int64_t last = -1;
  for (int64_t i = begin; i < end; ++i)
    if (row[i] > 0.0f) {
      s += row[i];
      last = i;
    }
  seg_sum[threadIdx.x] = s;
  seg_last[threadIdx.x] = last;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0.0;
  int64_t last_nonzero = 0;
  for (int t = 0; t < kThreads; ++t) {
    total += seg_sum[t];
    if (seg_last[t] >= 0) last_nonzero = seg_last[t];
  }
  const double target = u[blockIdx.x] * total;
  double cum = 0.0;
  for (int t = 0; t < kThreads; ++t) {
    if (target < cum + seg_sum[t]) {
      const int64_t b = t * seg, e = b + seg < V ? b + seg : V;
      for (int64_t i = b; i < e; ++i) {
        if (row[i] <= 0.0f) continue;
        cum += row[i];
        if (target < cum) {
          ids[blockIdx.x] = static_cast<int>(i);
          return;
        }
      }
      break;  // rounding left the target past this segment's last element
    }
    cum += seg_sum[t];
  }
  ids[blockIdx.x] = static_cast<int>(last_nonzero);
}

}  // namespace

cudaError_t Argmax(const float* logits, int64_t n, int64_t V, int* ids, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ArgmaxKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(logits, V, ids);
  return cudaGetLastError();
}

cudaError_t SoftmaxTemperature(const float* logits, int64_t n, int64_t V, float temperature, float* probs,
                               cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!(temperature > 0.0f)) return cudaErrorInvalidValue;
  SoftmaxKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(logits, V, 1.0f / temperature, probs);
  return cudaGetLastError();
}

cudaError_t SampleFromProbs(const float* probs, int64_t n, int64_t V, const double* u, int* ids,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SampleKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(probs, V, u, ids);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
