#pragma once
// Internal to the CPU attention (kernels/attention_cpu.cc): one tile of queries -- consecutive tokens
// [i0, i1) of one slot times the `group` query heads of KV head kvh -- and the AVX-512 loop over it
// (kernels/attention_avx512_cpu.cc), which gives the AVX2 loop's bits exactly.
#include <cstdint>

namespace layerskip::cpu {

struct AttentionTile {
  const float* q = nullptr;       // [n, heads, hd]
  const float* kbase = nullptr;   // K of position 0 of this slot and KV head; position p at p * pos_stride
  const float* vbase = nullptr;   // V likewise
  float* out = nullptr;           // [n, heads, hd]
  const int* positions = nullptr;  // [n]
  int64_t pos_stride = 0;
  int64_t i0 = 0, i1 = 0;  // the tile's tokens
  int heads = 0, group = 0, kvh = 0, hd = 0;
  float scale = 0.0f;
  // Query j of the tile (token-major, then the group's heads): its q / out row offset and its key count.
  int64_t Row(int j) const { return ((i0 + j / group) * heads + kvh * group + j % group) * hd; }
  int Len(int j) const { return positions[i0 + j / group] + 1; }
  int Queries() const { return static_cast<int>(i1 - i0) * group; }
};

namespace avx512 {
// The tile on AVX-512 F/BW/VL/DQ for head_dim a multiple of 16 up to 128 (AttentionTileSupports).
bool AttentionTileSupports(int hd);
void RunAttentionTile(const cpu::AttentionTile& t);
}  // namespace avx512

}  // namespace layerskip::cpu
