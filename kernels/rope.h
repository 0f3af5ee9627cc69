#pragma once
// Rotary position embedding, Hugging Face Llama convention (rotate_half: pairs (i, i + hd/2)),
// with optional llama3 frequency scaling.
#include <cstdint>
#include <vector>

#include "engine/core/rope_params.h"

namespace layerskip::cpu {

// cos/sin for positions [0, max_positions): [max_positions, head_dim/2] each.
class RopeTable {
 public:
  RopeTable(const RopeParams& rope, int max_positions);
  int max_positions() const { return max_positions_; }
  const float* cos(int pos) const { return cos_.data() + static_cast<size_t>(pos) * half_; }
  const float* sin(int pos) const { return sin_.data() + static_cast<size_t>(pos) * half_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }  // [head_dim/2]

 private:
  int half_, max_positions_;
  std::vector<float> inv_freq_, cos_, sin_;
};

// Inverse frequencies [head_dim/2], with llama3 scaling applied when configured.
std::vector<float> RopeInvFreq(const RopeParams& rope);

// Rotates `heads` vectors of head_dim at one position in place: v is [heads, head_dim].
void ApplyRope(float* v, int heads, int head_dim, const RopeTable& table, int pos);

}  // namespace layerskip::cpu

#if LAYERSKIP_WITH_CUDA  // CUDA (rope_cuda.cu, rope_store_kv_cuda.cu); conventions, guard: kernels/device_weight.h
#include <cuda_runtime.h>

#include "kernels/attention.h"  // cuda::KvLayerView

namespace layerskip::cuda {

// v: [n, heads, head_dim] rotated in place at positions[n]; cos, sin: [max_positions, head_dim/2] (the CPU
// RopeTable's values, so the rotation is bitwise the CPU one). Unlike the CPU op (one row, its position after
// the table) the positions of the batch come before the table, as in every device op that takes positions.
cudaError_t ApplyRope(float* v, int64_t n, int heads, int head_dim, const int* positions, const float* cos,
                      const float* sin, cudaStream_t stream);

// The fused QKV epilogue: qkv [n, (heads + 2*kv_heads) * head_dim] (q, then k, then v of each token, the
// output of one Gemv over the concatenated weights) -> q rotated into q_out [n, heads, head_dim], k rotated
// and v stored in the cache at (slots[i], positions[i]). Bitwise ApplyRope(q), ApplyRope(k), StoreKv.
cudaError_t RopeStoreKv(const float* qkv, int64_t n, int heads, const int* slots, const int* positions,
                        const float* cos, const float* sin, float* q_out, const KvLayerView& kv, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
