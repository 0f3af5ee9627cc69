#pragma once
// Internal to the CPU matmul: one entry point per instruction set, each compiled in its own translation
// unit (matmul_avx2_cpu.cc, matmul_avx512_cpu.cc, matmul_avx512bf16_cpu.cc,
// matmul_amx_cpu.cc); matmul_cpu.cc picks one.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/core/matrix.h"
#include "engine/util/thread_pool.h"

namespace layerskip::cpu {

// One product of a group that shares x: y[n, M] = x @ W^T. With w_up set, a fused SwiGLU:
// y = silu(x @ W^T) * (x @ W_up^T), with up[n, M] as scratch for the second product.
struct MatmulJob {
  const Matrix* w = nullptr;
  float* y = nullptr;
  const Matrix* w_up = nullptr;
  float* up = nullptr;
};

// Rows of W the group's parallel loop covers (a SwiGLU job's gate and up both count).
inline int64_t GroupRows(const MatmulJob* jobs, int num_jobs) {
  int64_t rows = 0;
  for (int i = 0; i < num_jobs; ++i) rows += jobs[i].w->rows() * (jobs[i].w_up ? 2 : 1);
  return rows;
}

// A group's row blocks as one flattened list that the threads claim by index: job i's blocks of
// `block_rows` rows (the last one shorter) are [first[i], first[i + 1]).
struct RowBlocks {
  int64_t block_rows = 0;
  std::vector<int64_t> first;  // per job, its first block; then the total

  void Build(const MatmulJob* jobs, int num_jobs, int64_t rows_per_block) {
    block_rows = rows_per_block;
    first.assign(static_cast<size_t>(num_jobs) + 1, 0);
    for (int i = 0; i < num_jobs; ++i) first[i + 1] = first[i] + (jobs[i].w->rows() + block_rows - 1) / block_rows;
  }
  int64_t size() const { return first.back(); }
  // Block b: its job and its rows [*j0, *j1) of that job's W.
  int Locate(const MatmulJob* jobs, int64_t b, int64_t* j0, int64_t* j1) const {
    const int job = static_cast<int>(std::upper_bound(first.begin(), first.end(), b) - first.begin()) - 1;
    *j0 = (b - first[job]) * block_rows;
    *j1 = std::min(jobs[job].w->rows(), *j0 + block_rows);
    return job;
  }
};

// x: [n, K] f32. Every job's matrices are [M_i, K] of one type (bf16 or f32). All row blocks of all jobs
// are one parallel loop. Each output's arithmetic depends only on the instruction set, never on n, the
// job grouping, the tiles or the threads.
void MatmulGroupAvx2(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool);
void MatmulGroupAvx512(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool);
// bf16 weights: x rounded to bf16 (nearest even) and vdpbf16ps dot products; f32 weights as Avx512.
void MatmulGroupAvx512Bf16(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool);
// bf16 weights: x rounded to bf16 as above, AMX-BF16 tiles (kernels/matmul_amx_cpu.cc; the thread must
// have AmxPermission); f32 weights as Avx512Bf16.
void MatmulGroupAmx(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool);

}  // namespace layerskip::cpu
