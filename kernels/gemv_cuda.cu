// The decode GEMV (the plan: kernels/gemv_plan.h; the exact CPU emulation: GemvReference):
// y[n, M] = x[n, K] @ W[M, K]^T for K % 8 == 0, with an epilogue (store, residual add, or SwiGLU of row
// pairs).
//
// Layout: a block is 8 warps; warp w serves row slot w / S and K segment w % S (S = split_k of the weight
// shape). A row slot is R = 2 or 4 weight rows (SwiGLU: R/2 pairs of rows j and j + M/2) for the block's tile
// of T tokens, so each weight is read once per tile. A lane streams its segment's 8-element groups l, l+32,
// ... with 16-byte loads, four groups per row (8 or 16 independent 16-byte loads) issued before their FMAs.
//
// The fixed order of y[i, j] (whatever n, T or the grid): per segment, lane l's fmaf chain over its groups
// in increasing order (elements 0..7 in order) from 0; the butterfly of WarpSum over the 32 lanes; then the
// segment sums added in segment order by one thread. T only changes how many accumulators a lane holds.
// With S = 1 this is exactly the order of the old Matmul kernel (matmul_cuda.cu).
//
// GemvArgmax (issue 17, CudaModelOptions::head_argmax): the same kernel with an argmax epilogue. The thread
// of (row slot, token) forms y[i, j] exactly as the store epilogue would (the same floats), keeps the best of
// its R rows, the block keeps the best of its row slots (ArgmaxBetter: larger value, else smaller index;
// NaN never), and writes one (max, index) candidate per (token, block); a second kernel reduces a token's
// candidates in block order. ArgmaxBetter picks the same element whatever the order (it is a strict total
// order on the non-NaN candidates), so the id equals Argmax(Gemv(x)) by construction, without the [n, M]
// logits ever being written.
//
// CUDA cores, not tensor cores: activations are f32 (as on the CPU); an MMA would round them to bf16/tf32
// (different results from the CPU and the old kernel) or need a 3-way split whose accumulation order inside
// the tensor core is not specified, so batch invariance could not be argued from the source.
#include <climits>

#include "kernels/cuda_device.cuh"
#include "kernels/matmul.h"
#include "kernels/gemv_plan.h"

namespace layerskip::cuda {
namespace {

constexpr int kUnroll = 4;  // groups per lane per row in flight at once

// 16 bytes of weights, read once: not kept in L1 (x is, and it is reused by every row).
__device__ __forceinline__ uint4 LoadStream(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// The raw bits of one 8-element group of weights: bf16 is one uint4, f32 two.
template <typename W>
struct Group;
template <>
struct Group<uint16_t> {
  uint4 a;
  __device__ __forceinline__ void Load(const uint16_t* w, int64_t index) {
    a = LoadStream(reinterpret_cast<const uint4*>(w + index));
  }
  __device__ __forceinline__ void Zero() { a = make_uint4(0, 0, 0, 0); }
  __device__ __forceinline__ void Unpack(float (&out)[8]) const {
    const uint32_t u[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(u[i] << 16);
      out[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
  }
};
template <>
struct Group<float> {
  uint4 a, b;
  __device__ __forceinline__ void Load(const float* w, int64_t index) {
    a = LoadStream(reinterpret_cast<const uint4*>(w + index));
    b = LoadStream(reinterpret_cast<const uint4*>(w + index + 4));
  }
  __device__ __forceinline__ void Zero() { a = b = make_uint4(0, 0, 0, 0); }
  __device__ __forceinline__ void Unpack(float (&out)[8]) const {
    out[0] = __uint_as_float(a.x), out[1] = __uint_as_float(a.y), out[2] = __uint_as_float(a.z);
    out[3] = __uint_as_float(a.w), out[4] = __uint_as_float(b.x), out[5] = __uint_as_float(b.y);
    out[6] = __uint_as_float(b.z), out[7] = __uint_as_float(b.w);
  }
};

// Programmatic dependent launch (sm_90): griddepcontrol.launch_dependents, then griddepcontrol.wait (which
// returns once the preceding grid has completed and its memory operations are visible).
__device__ __forceinline__ void PdlLaunchDependentsThenWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

struct Args {
  const float* x;  // [n, K]
  int64_t n, M, K;
  int split;
  int64_t segment_groups, units;
  int row_slots;
  GemvEpilogue epilogue;
  float* y;  // [n, ldy]
  int64_t ldy;
  const float* norm_w;  // [K], or null: x is used as given
  float eps;
  bool early_loads = false;       // the plan's first round of weight loads before the norm prologue
  bool pdl = false;               // launched as a programmatic dependent: wait before reading x or y
  float* arg_value = nullptr;     // GemvArgmax: [n, arg_stride] candidates' values
  int* arg_index = nullptr;       // and indices
  int64_t arg_stride = 0;
};

// The RMSNorm scale of each token of the tile, inv[t] = 1 / sqrt(mean(x[t]^2) + eps), with exactly the
// arithmetic of RmsNormKernel (rms_norm_cuda.cu): the block is 256 threads as there, thread t accumulates
// k = t, t + 256, ... with fmaf, then BlockSum's fixed tree. Every thread of the block must call it.
template <int T>
__device__ __forceinline__ void TileNormScales(const Args& a, int64_t t0, int64_t nt, float* shared,
                                               float (&inv)[T]) {
#pragma unroll
  for (int t = 0; t < T; ++t) {
    inv[t] = 1.0f;
    if (t >= nt) continue;  // nt is the same for the whole block: BlockSum is reached by all threads or none
    const float* xi = a.x + (t0 + t) * a.K;
    float acc = 0.0f;
    for (int64_t k = threadIdx.x; k < a.K; k += kGemvWarps * kWarp) acc = fmaf(xi[k], xi[k], acc);
    const float ms = BlockSum(acc, shared) / static_cast<float>(a.K);
    inv[t] = 1.0f / sqrtf(ms + a.eps);
  }
}

// grid: (grid_x, grid_y), block: 256 (8 warps); R weight rows per warp. See the file comment for the order
// of every sum. Plain: unit u holds rows u*R .. u*R+R-1. SwiGLU (F = M/2 output columns): unit u holds
// columns c = u*(R/2) + p, weight rows c (gate, as r = 2p) and F + c (up, as r = 2p + 1).
template <typename W, int T, int R, bool kNorm, bool kArgmax>
__global__ void __launch_bounds__(kGemvWarps * kWarp) GemvKernel(const W* __restrict__ w, Args a) {
  __shared__ float partial[kGemvWarps][R][T];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int slot = warp / a.split, seg = warp % a.split;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * a.row_slots + slot;
  const bool swiglu = a.epilogue == GemvEpilogue::kSwiGlu;
  const int64_t F = a.M / 2;
  int64_t row[R];
  bool live[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (swiglu) {
      const int64_t c = unit * (R / 2) + r / 2;
      row[r] = (r % 2 == 0 ? 0 : F) + c;
      live[r] = c < F;
    } else {
      row[r] = unit * R + r;
      live[r] = row[r] < a.M;
    }
  }
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * T;
  const int64_t nt = a.n - t0 < T ? a.n - t0 : T;
  const int64_t groups = a.K / 8;
  const int64_t g_begin = seg * a.segment_groups;
  const int64_t g_end = g_begin + a.segment_groups < groups ? g_begin + a.segment_groups : groups;

  // Every load of a round is issued before the round's first FMA.
  Group<W> raw[kUnroll][R];
  auto load_round = [&](int64_t g0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t g = g0 + u * kWarp;
        if (live[r] && g < g_end) raw[u][r].Load(w, row[r] * a.K + g * 8);
        else raw[u][r].Zero();
      }
  };
  // kWide plans: the first round's weight loads go out before the folded norm's prologue (which reads x and
  // waits on three barriers), so the HBM latency overlaps it. Only when the loads happen changes.
  bool preloaded = false;
  if ((kNorm || a.pdl) && a.early_loads && g_begin + lane < g_end) {
    load_round(g_begin + lane);
    preloaded = true;
  }
  // kWidePdl: let the next kernel launch now (it, too, touches only its weights until its own wait), then
  // wait for the kernel before this one to complete: x, norm_w and y are read, and y written, only after.
  // Every block reaches this point (no return before it), so the grid completes only after its predecessor.
  if (a.pdl) PdlLaunchDependentsThenWait();

  // Folded RMSNorm: h[k] = w[k] * (x[k] * inv), as RmsNormKernel writes it, computed per (token, group).
  __shared__ float norm_shared[32];
  float inv[T];
  if (kNorm) TileNormScales<T>(a, t0, nt, norm_shared, inv);

  float acc[R][T];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;

  for (int64_t g0 = g_begin + lane; g0 < g_end; g0 += kUnroll * kWarp) {
    if (!preloaded) load_round(g0);
    preloaded = false;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t g = g0 + u * kWarp;
      if (g >= g_end) break;
      float wv[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) raw[u][r].Unpack(wv[r]);
      float nw[8];
      if (kNorm) Load8(a.norm_w, g * 8, nw);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        if (t >= nt) break;
        float xv[8];
        Load8(a.x, (t0 + t) * a.K + g * 8, xv);
        if (kNorm) {
#pragma unroll
          for (int e = 0; e < 8; ++e) xv[e] = nw[e] * (xv[e] * inv[t]);
        }
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][t] = fmaf(wv[r][e], xv[e], acc[r][t]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float sum = WarpSum(acc[r][t]);
      if (lane == 0) partial[warp][r][t] = sum;
    }
  __syncthreads();
  // One thread per (row slot, token): the segment sums in segment order, then the epilogue.
  const int idx = threadIdx.x;
  const int s = idx / T, t = idx % T;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * a.row_slots + s;
  const bool active = idx < a.row_slots * T && u < a.units && t < nt;
  float v[R];
  if (active) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      v[r] = partial[s * a.split][r][t];
      for (int q = 1; q < a.split; ++q) v[r] += partial[s * a.split + q][r][t];
    }
  }
  if (kArgmax) {  // the block's best (value, row) per token; every thread reaches the barrier
    __shared__ float cand_v[kGemvWarps][T];
    __shared__ int cand_i[kGemvWarps][T];
    if (idx < a.row_slots * T) {
      float bv = -INFINITY;
      int bi = INT_MAX;  // "none yet": loses every tie
      if (active) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int64_t j = u * R + r;
          if (j < a.M && ArgmaxBetter(v[r], j, bv, bi)) {
            bv = v[r];
            bi = static_cast<int>(j);
          }
        }
      }
      cand_v[s][t] = bv;
      cand_i[s][t] = bi;
    }
    __syncthreads();
    if (idx < nt) {
      float bv = -INFINITY;
      int bi = INT_MAX;
      for (int q = 0; q < a.row_slots; ++q)
        if (ArgmaxBetter(cand_v[q][idx], cand_i[q][idx], bv, bi)) {
          bv = cand_v[q][idx];
          bi = cand_i[q][idx];
        }
      const int64_t at = (t0 + idx) * a.arg_stride + blockIdx.x;
      a.arg_value[at] = bv;
      a.arg_index[at] = bi;
    }
    return;
  }
  if (!active) return;
  float* yi = a.y + (t0 + t) * a.ldy;
  if (swiglu) {
#pragma unroll
    for (int p = 0; p < R / 2; ++p) {
      const int64_t c = u * (R / 2) + p;
      if (c >= F) break;
      const float g = v[2 * p];
      yi[c] = g / (1.0f + expf(-g)) * v[2 * p + 1];  // as SwiGluKernel spells it
    }
    return;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = u * R + r;
    if (j >= a.M) break;
    if (a.epilogue == GemvEpilogue::kAdd) yi[j] = yi[j] + v[r];  // as AddKernel: x += h
    else yi[j] = v[r];
  }
}

// grid: n, block: 256. ids[i] = the best of token i's `blocks` candidates (thread t takes blocks t, t + 256,
// ... in order, then a fixed tree), the first index on ties; no candidate (all NaN): 0, as Argmax.
__global__ void ArgmaxCandidatesKernel(const float* value, const int* index, int64_t stride, int64_t blocks,
                                       int64_t M, int* ids) {
  constexpr int kThreads = 256;
  __shared__ float best_v[kThreads];
  __shared__ int best_i[kThreads];
  const float* v = value + blockIdx.x * stride;
  const int* ix = index + blockIdx.x * stride;
  float bv = -INFINITY;
  int bi = INT_MAX;
  for (int64_t b = threadIdx.x; b < blocks; b += kThreads)
    if (ArgmaxBetter(v[b], ix[b], bv, bi)) {
      bv = v[b];
      bi = ix[b];
    }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int stride2 = kThreads / 2; stride2 > 0; stride2 >>= 1) {
    if (threadIdx.x < stride2 &&
        ArgmaxBetter(best_v[threadIdx.x + stride2], best_i[threadIdx.x + stride2], best_v[threadIdx.x],
                     best_i[threadIdx.x])) {
      best_v[threadIdx.x] = best_v[threadIdx.x + stride2];
      best_i[threadIdx.x] = best_i[threadIdx.x + stride2];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = best_i[0] < M ? best_i[0] : 0;
}

template <typename W, int T, int R>
cudaError_t Launch(const W* w, const GemvPlan& p, const Args& a, cudaStream_t stream) {
  if (p.rows_per_warp != R) return cudaErrorInvalidValue;  // the plan's grid assumes R rows per warp
  const dim3 grid(static_cast<unsigned int>(p.grid_x), static_cast<unsigned int>(p.grid_y));
  if (a.pdl) {  // kWidePdl: the launch may overlap the previous kernel in the stream (see GemvKernel)
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = dim3(kGemvWarps * kWarp);
    config.stream = stream;
    cudaLaunchAttribute attribute[1];
    attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[0].val.programmaticStreamSerializationAllowed = 1;
    config.attrs = attribute;
    config.numAttrs = 1;
    if (a.arg_value) return cudaLaunchKernelEx(&config, GemvKernel<W, T, R, false, true>, w, a);
    if (a.norm_w) return cudaLaunchKernelEx(&config, GemvKernel<W, T, R, true, false>, w, a);
    return cudaLaunchKernelEx(&config, GemvKernel<W, T, R, false, false>, w, a);
  }
  if (a.arg_value) GemvKernel<W, T, R, false, true><<<grid, kGemvWarps * kWarp, 0, stream>>>(w, a);
  else if (a.norm_w) GemvKernel<W, T, R, true, false><<<grid, kGemvWarps * kWarp, 0, stream>>>(w, a);
  else GemvKernel<W, T, R, false, false><<<grid, kGemvWarps * kWarp, 0, stream>>>(w, a);
  return cudaGetLastError();
}

template <typename W>
cudaError_t Dispatch(const W* w, const GemvPlan& p, const Args& a, cudaStream_t stream) {
  // The tile (and R, which follows it) changes how many tokens and rows share a load, never a result.
  switch (p.tile) {
    case 1: return Launch<W, 1, 2>(w, p, a, stream);
    case 2: return Launch<W, 2, 2>(w, p, a, stream);
    case 4: return Launch<W, 4, 2>(w, p, a, stream);
    case 8: return Launch<W, 8, 4>(w, p, a, stream);
    default: return Launch<W, 16, 4>(w, p, a, stream);
  }
}

}  // namespace

bool GemvSupported(const DeviceWeight& w, GemvEpilogue epilogue) {
  return PlanGemv(w.rows, w.cols, 1, epilogue == GemvEpilogue::kSwiGlu).supported;
}

cudaError_t Gemv(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                 cudaStream_t stream, const float* norm_w, float eps) {
  return GemvPlanned(x, n, w, epilogue, y, stream, GemvPlanKind::kDefault, norm_w, eps);
}

namespace {

// The launch arguments of y = x W^T under `kind`, or an error for a shape or size Gemv does not take.
cudaError_t MakeArgs(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                     GemvPlanKind kind, const float* norm_w, float eps, GemvPlan* plan, Args* args) {
  const bool swiglu = epilogue == GemvEpilogue::kSwiGlu;
  const GemvPlan p = PlanGemv(w.rows, w.cols, n, swiglu, kind);
  if (!p.supported) return cudaErrorInvalidValue;
  // grid_y <= 65535: n <= 65535 * 16 tokens per call (the model's max_batch is far below).
  if (p.grid_y > 65535 || p.grid_x > 0x7fffffff) return cudaErrorInvalidValue;
  Args& a = *args;
  a.x = x;
  a.n = n;
  a.M = w.rows;
  a.K = w.cols;
  a.split = p.split_k;
  a.segment_groups = p.segment_groups;
  a.units = p.units;
  a.row_slots = p.row_slots;
  a.epilogue = epilogue;
  a.y = y;
  a.ldy = swiglu ? w.rows / 2 : w.rows;
  a.norm_w = norm_w;
  a.eps = eps;
  a.early_loads = p.early_loads;
  a.pdl = p.pdl;
  *plan = p;
  return cudaSuccess;
}

cudaError_t DispatchType(const DeviceWeight& w, const GemvPlan& p, const Args& a, cudaStream_t stream) {
  if (w.type == DType::kBF16) return Dispatch(static_cast<const uint16_t*>(w.data), p, a, stream);
  return Dispatch(static_cast<const float*>(w.data), p, a, stream);
}

}  // namespace

cudaError_t GemvPlanned(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                        cudaStream_t stream, GemvPlanKind kind, const float* norm_w, float eps) {
  if (n == 0 || w.rows == 0) return cudaSuccess;
  GemvPlan p;
  Args a;
  const cudaError_t err = MakeArgs(x, n, w, epilogue, y, kind, norm_w, eps, &p, &a);
  if (err != cudaSuccess) return err;
  return DispatchType(w, p, a, stream);
}

int64_t GemvArgmaxScratchFloats(int64_t M, int64_t K, int64_t n, GemvPlanKind kind) {
  return 2 * n * GemvArgmaxBlocks(M, K, kind);
}

cudaError_t GemvArgmax(const float* x, int64_t n, const DeviceWeight& w, float* scratch, int* ids,
                       cudaStream_t stream, GemvPlanKind kind) {
  if (n == 0) return cudaSuccess;
  if (w.rows == 0 || w.rows > INT_MAX) return cudaErrorInvalidValue;
  GemvPlan p;
  Args a;
  cudaError_t err = MakeArgs(x, n, w, GemvEpilogue::kStore, nullptr, kind, nullptr, 0.0f, &p, &a);
  if (err != cudaSuccess) return err;
  const int64_t stride = GemvArgmaxBlocks(w.rows, w.cols, kind);
  a.arg_value = scratch;
  a.arg_index = reinterpret_cast<int*>(scratch + n * stride);
  a.arg_stride = stride;
  if ((err = DispatchType(w, p, a, stream)) != cudaSuccess) return err;
  ArgmaxCandidatesKernel<<<static_cast<unsigned int>(n), 256, 0, stream>>>(a.arg_value, a.arg_index, stride,
                                                                           p.grid_x, w.rows, ids);
  return cudaGetLastError();
}

}  // namespace layerskip::cuda
