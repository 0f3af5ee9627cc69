#pragma once
// The CUDA ops, one per kernels/<op>_cuda.cu file, with the math of the CPU op of the same name
// (kernels/<op>.h). All pointers are device pointers; every op is enqueued on `stream` and returns the
// launch error (cudaSuccess when enqueued). This header needs only the CUDA runtime, so both nvcc and the
// host compiler include it; kernels/cuda_common.h turns the errors into absl::Status.
//
// Batch invariance (docs/cuda.md): every output element is computed by one fixed sequence of operations
// that depends on the shapes of the weights and on the token's own position, never on the number of
// tokens in the call. The library is compiled with -fmad=false, so only the fmaf() calls spelled in the
// source are fused.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/gemv_plan.h"  // GemvPlanKind (plain C++)

namespace layerskip::cuda {

enum class DType { kBF16, kF32 };

// A row-major [rows, cols] weight matrix in device memory (bf16 as raw uint16_t, or f32).
struct DeviceWeight {
  DType type = DType::kBF16;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

// --- embedding_cuda.cu
// ids: [n] (each in [0, V), unchecked), table: [V, D], out: [n, D] f32.
cudaError_t Embedding(const int* ids, int64_t n, const DeviceWeight& table, float* out, cudaStream_t stream);

// --- rms_norm_cuda.cu
// x, y: [n, D] (may alias), w: [D]. y = w * (x / sqrt(mean(x^2) + eps)), one block per row.
cudaError_t RmsNorm(const float* x, const float* w, float* y, int64_t n, int64_t D, float eps, cudaStream_t stream);

// --- rope_cuda.cu
// v: [n, heads, head_dim] rotated in place at positions[n]; cos, sin: [max_positions, head_dim/2] (the CPU
// RopeTable's values, so the rotation is bitwise the CPU one).
cudaError_t ApplyRope(float* v, int64_t n, int heads, int head_dim, const int* positions, const float* cos,
                      const float* sin, cudaStream_t stream);

// --- swiglu_cuda.cu
// out[i] = silu(gate[i]) * up[i] over [count] (out may alias gate).
cudaError_t SwiGlu(const float* gate, const float* up, float* out, int64_t count, cudaStream_t stream);
// x[i] += h[i] over [count] (the residual add).
cudaError_t AddInPlace(float* x, const float* h, int64_t count, cudaStream_t stream);

// --- matmul_cuda.cu
// x: [n, K] f32, W: [M, K] (bf16 or f32, nn.Linear layout), y: [n, M] f32 (y = x @ W^T).
// Batch-invariant: y[i, j] is the same bits for any n (see matmul_cuda.cu for the fixed order).
cudaError_t Matmul(const float* x, int64_t n, const DeviceWeight& w, float* y, cudaStream_t stream);

// --- gemv_cuda.cu (the decode GEMV; plan and CPU emulation in kernels/gemv_plan.h)
enum class GemvEpilogue {
  kStore,   // y[n, M] = x W^T
  kAdd,     // y[n, M] += x W^T (the residual add: y + (x W^T), as AddInPlace)
  kSwiGlu,  // W = [gate; up] ([2F, K]): y[n, F] = silu(x gate^T) * (x up^T), as SwiGlu
};
// Whether Gemv takes this weight (K % 8 == 0; SwiGLU: an even row count). A property of the shape only.
bool GemvSupported(const DeviceWeight& w, GemvEpilogue epilogue);
// x: [n, K] f32, W: [M, K]; any n (tiles of up to 16 tokens read each weight once). y[i, j] has one fixed
// order of operations per weight shape (split-K from (M, K) only): bitwise the same for any n. With a
// split of 1 it is bitwise the old Matmul. cudaErrorInvalidValue for an unsupported shape.
// norm_w ([K], optional): RMSNorm folded in, the GEMV of RmsNorm(x, norm_w, eps) bitwise (each block
// recomputes its tokens' norm scale in RmsNorm's order; x must not alias y).
cudaError_t Gemv(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                 cudaStream_t stream, const float* norm_w = nullptr, float eps = 0.0f);
// Issue 17, not yet run on a GPU (docs/cuda.md, "Issue 17, step 2"): Gemv under a chosen split-K rule
// (kernels/gemv_plan.h GemvPlanKind; kDefault is Gemv). Bitwise GemvReference(..., kind), batch-invariant.
cudaError_t GemvPlanned(const float* x, int64_t n, const DeviceWeight& w, GemvEpilogue epilogue, float* y,
                        cudaStream_t stream, GemvPlanKind kind, const float* norm_w = nullptr, float eps = 0.0f);
// Floats of scratch GemvArgmax needs for n tokens of a [M, K] weight.
int64_t GemvArgmaxScratchFloats(int64_t M, int64_t K, int64_t n, GemvPlanKind kind = GemvPlanKind::kDefault);
// ids[n] = Argmax(GemvPlanned(x, n, w, kStore, kind)) without writing the [n, M] product: the GEMV's epilogue
// keeps a (max, first index) candidate per (token, block) in `scratch` and a second kernel reduces them; the
// same values are compared, so the ids equal Argmax's bitwise (first index on ties; all NaN: 0).
cudaError_t GemvArgmax(const float* x, int64_t n, const DeviceWeight& w, float* scratch, int* ids,
                       cudaStream_t stream, GemvPlanKind kind = GemvPlanKind::kDefault);

// --- attention_cuda.cu
// One layer of the device KV cache: K of (slot, pos) at k + slot*slot_stride + pos*kv_heads*head_dim
// elements, laid out [kv_heads, head_dim]; V likewise (the CPU KvLayerView layout). dtype kF32: k, v are
// float*; kBF16: uint16_t* bf16 bits (rounded to nearest even once, on store; read back exactly).
struct KvLayerView {
  void* k = nullptr;
  void* v = nullptr;
  int64_t slot_stride = 0;
  int kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;
};

// Keys are processed in chunks of this many positions; a token's result depends only on its position.
constexpr int kAttentionChunk = 64;
// The largest head_dim the attention kernels take.
constexpr int kMaxHeadDim = 256;

// Writes k, v: [n, kv_heads*head_dim] to the cache at (slots[i], positions[i]).
cudaError_t StoreKv(const float* k, const float* v, int64_t n, const int* slots, const int* positions,
                    const KvLayerView& kv, cudaStream_t stream);

// The fused QKV epilogue: qkv [n, (heads + 2*kv_heads) * head_dim] (q, then k, then v of each token, the
// output of one Gemv over the concatenated weights) -> q rotated into q_out [n, heads, head_dim], k rotated
// and v stored in the cache at (slots[i], positions[i]). Bitwise ApplyRope(q), ApplyRope(k), StoreKv.
cudaError_t RopeStoreKv(const float* qkv, int64_t n, int heads, const int* slots, const int* positions,
                        const float* cos, const float* sin, float* q_out, const KvLayerView& kv, cudaStream_t stream);

// Floats of scratch AttentionDecode needs: [n, heads, chunks(max_positions), head_dim + 2].
int64_t AttentionDecodeScratchFloats(int64_t n, int heads, int max_positions, int head_dim);

// Split-K decode attention. q: [n, heads, head_dim]; token i attends to positions [0, positions[i]] of slot
// slots[i]; out: [n, heads, head_dim]. One block per (token, kv head, chunk of kAttentionChunk positions)
// writes a partial (max, sum, unnormalised output) to `scratch`; a second kernel folds the chunks of each
// (token, head) in chunk order. max_positions bounds every position (sizes the grid, not the arithmetic).
cudaError_t AttentionDecode(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                            int max_positions, const KvLayerView& kv, float* scratch, float* out,
                            cudaStream_t stream);

// Tokens per prefill tile for a GQA group size (heads / kv_heads): tile tokens x group = 16 query heads
// share each K/V chunk loaded into shared memory.
int AttentionTileTokens(int group);

// Query tiles for AttentionPrefill from the host-side slots and positions of a batch: [num_tiles, tile]
// token indices (-1 pads), each tile holding consecutive tokens of one slot.
std::vector<int> AttentionTiles(const int* slots, int64_t n, int group);

// Tiled prefill attention, same inputs and bitwise the same results as AttentionDecode: one block per
// (tile, kv head) walks the chunks in order, loading each chunk's K/V once for the whole tile, and folds
// the chunk partials with the same arithmetic as AttentionDecode.
cudaError_t AttentionPrefill(const float* q, const int* tiles, int num_tiles, int tile_tokens, const int* slots,
                             const int* positions, int heads, const KvLayerView& kv, float* out,
                             cudaStream_t stream);

// Issue 17, not yet run on a GPU (docs/cuda.md): AttentionDecode in one kernel. Each (token, kv head, chunk)
// block writes its partial to `scratch` as AttentionDecode does; the block that arrives last for its (token,
// kv head) (an atomic count in counters[n, kv_heads]) folds chunks 0..pos/64 in chunk order with the fold
// kernel's arithmetic and resets its counter. Bitwise AttentionDecode. counters: zero before the first call,
// left zero by every call (so a CUDA graph may replay it); one call at a time per counters buffer.
int64_t AttentionDecodeCounterInts(int64_t n, int kv_heads);
cudaError_t AttentionDecodeFused(const float* q, int64_t n, const int* slots, const int* positions, int heads,
                                 int max_positions, const KvLayerView& kv, float* scratch, int* counters,
                                 float* out, cudaStream_t stream);

// --- sampling_cuda.cu
// ids[i] = index of the largest logits[i, :] (the first one on ties); logits: [n, V].
cudaError_t Argmax(const float* logits, int64_t n, int64_t V, int* ids, cudaStream_t stream);
// probs[n, V] = softmax(logits / temperature) per row (temperature > 0; top-k / top-p run on the host).
cudaError_t SoftmaxTemperature(const float* logits, int64_t n, int64_t V, float temperature, float* probs,
                               cudaStream_t stream);
// ids[i] = inverse-CDF draw from probs[i, :] (need not be normalised) with u[i] in [0, 1), as the CPU
// SampleFromProbs (sums in double).
cudaError_t SampleFromProbs(const float* probs, int64_t n, int64_t V, const double* u, int* ids,
                            cudaStream_t stream);

// --- fill_cuda.cu (benchmarks: random weights made on the device, no host copy of a 16 GB model)
// data[count] = normal(0, 1) * scale, from a counter-based hash of (seed, index).
cudaError_t FillRandom(DType type, void* data, int64_t count, uint64_t seed, float scale, cudaStream_t stream);
// data[count] = value (f32).
cudaError_t FillConstant(float* data, int64_t count, float value, cudaStream_t stream);
// Reads `bytes` of src and writes a checksum (a memory-bandwidth probe): sum of every 32-bit word to out[0].
cudaError_t ReadBandwidthProbe(const void* src, int64_t bytes, unsigned int* out, cudaStream_t stream);

}  // namespace layerskip::cuda
