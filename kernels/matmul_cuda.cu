// Batch-invariant matmul on the device (the CPU op: kernels/matmul_cpu.cc): y[n, M] = x[n, K] @ W[M, K]^T.
//
// The fixed order of one dot product y[i, j], whatever n and whichever template variant runs it:
//   K % 8 == 0: lane l (0..31) takes the 8-element groups g = l, l+32, l+64, ... in increasing g and, inside
//               a group, elements 0..7 in order: acc = fmaf(w, x, acc) from acc = 0.
//   otherwise:  lane l takes elements k = l, l+32, ... in order, the same fmaf chain.
//   Then the 32 lane sums are added by the butterfly of WarpSum (offsets 16, 8, 4, 2, 1).
// A warp computes R rows x T tokens at once, so W is loaded once for T tokens, but each (token, row)
// accumulator sees exactly the chain above: T and R change how many accumulators a lane holds, never what
// goes into one. Rows and tokens are split between warps and blocks, never the reduction.
#include "kernels/cuda_device.cuh"
#include "kernels/matmul.h"

namespace layerskip::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kRows = 2;  // rows of W per warp

// grid: (ceil(M / (4*R)), ceil(n / T)), block: 128 (4 warps). Warp w of block (bx, by) computes rows
// [(bx*4 + w)*R, +R) for tokens [by*T, +T). x: [n, K] f32, w: [M, K], y: [n, M].
template <typename W, int T, int R>
__global__ void __launch_bounds__(kWarpsPerBlock * kWarp)
    MatmulKernel(const float* __restrict__ x, int64_t n, const W* __restrict__ w, float* __restrict__ y, int64_t M,
                 int64_t K) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t r0 = (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp) * R;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * T;
  if (r0 >= M) return;
  float acc[R][T];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;

  if (K % 8 == 0) {
    const int64_t groups = K / 8;
    for (int64_t g = lane; g < groups; g += kWarp) {
      float wv[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r0 + r < M) {
          Load8(w, (r0 + r) * K + g * 8, wv[r]);
        } else {
#pragma unroll
          for (int e = 0; e < 8; ++e) wv[r][e] = 0.0f;
        }
      }
#pragma unroll
      for (int t = 0; t < T; ++t) {
        if (t0 + t >= n) break;
        float xv[8];
        Load8(x, (t0 + t) * K + g * 8, xv);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][t] = fmaf(wv[r][e], xv[e], acc[r][t]);
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += kWarp) {
      float wv[R];
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r] = r0 + r < M ? LoadOne(w, (r0 + r) * K + k) : 0.0f;
#pragma unroll
      for (int t = 0; t < T; ++t) {
        if (t0 + t >= n) break;
        const float xv = x[(t0 + t) * K + k];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][t] = fmaf(wv[r], xv, acc[r][t]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float sum = WarpSum(acc[r][t]);
      if (lane == 0 && t0 + t < n && r0 + r < M) y[(t0 + t) * M + r0 + r] = sum;
    }
  }
}

template <typename W, int T>
void Launch(const float* x, int64_t n, const W* w, float* y, int64_t M, int64_t K, cudaStream_t stream) {
  const dim3 grid(CeilDiv(M, kWarpsPerBlock * kRows), CeilDiv(n, T));
  MatmulKernel<W, T, kRows><<<grid, kWarpsPerBlock * kWarp, 0, stream>>>(x, n, w, y, M, K);
}

template <typename W>
void Dispatch(const float* x, int64_t n, const W* w, float* y, int64_t M, int64_t K, cudaStream_t stream) {
  // The token tile only changes how many tokens share a W load (speed), never a result.
  if (n == 1) Launch<W, 1>(x, n, w, y, M, K, stream);
  else if (n <= 4) Launch<W, 4>(x, n, w, y, M, K, stream);
  else Launch<W, 8>(x, n, w, y, M, K, stream);
}

}  // namespace

cudaError_t Matmul(const float* x, int64_t n, const DeviceWeight& w, float* y, cudaStream_t stream) {
  if (n == 0 || w.rows == 0) return cudaSuccess;
  if (w.type == DType::kBF16)
    Dispatch(x, n, static_cast<const uint16_t*>(w.data), y, w.rows, w.cols, stream);
  else
    Dispatch(x, n, static_cast<const float*>(w.data), y, w.rows, w.cols, stream);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
