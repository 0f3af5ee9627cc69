// The CPU matmul's entry points: pick the instruction set's kernel (the caller's path, or the process's
// generated-token path, kernels/cpu_features.h) and the weight type's. The kernels themselves: kernels/matmul_tiles.h, compiled per
// instruction set in matmul_avx2_cpu.cc, matmul_avx512_cpu.cc and matmul_avx512bf16_cpu.cc; the AMX
// tiles in matmul_amx_cpu.cc.
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/matmul.h"
#include "kernels/matmul_int8_cpu.h"
#include "kernels/matmul_isa.h"
#include "kernels/swiglu.h"

namespace layerskip::cpu {
namespace {

// Weight types the tiled float kernels take. Another type (a quantized one) is computed one product at
// a time by its own kernel in Matmul below; grouped calls fall back to that.
bool TiledType(const Matrix& w) { return w.type() == WeightType::kBF16 || w.type() == WeightType::kF32; }

// All jobs' matrices tiled and of one type and width: one parallel loop on the active path.
bool Groupable(const MatmulJob* jobs, int num_jobs) {
  for (int i = 0; i < num_jobs; ++i) {
    const MatmulJob& j = jobs[i];
    if (!TiledType(*j.w) || j.w->type() != jobs[0].w->type() || j.w->cols() != jobs[0].w->cols()) return false;
    if (j.w_up && (j.w_up->type() != j.w->type() || j.w_up->rows() != j.w->rows() || j.w_up->cols() != j.w->cols()))
      return false;
  }
  return true;
}

void RunGroup(const float* x, int64_t n, const MatmulJob* jobs, int num_jobs, ThreadPool* pool, CpuKernels path) {
  switch (path) {
    case CpuKernels::kAmx: return MatmulGroupAmx(x, n, jobs, num_jobs, pool);
    case CpuKernels::kAvx512Bf16: return MatmulGroupAvx512Bf16(x, n, jobs, num_jobs, pool);
    case CpuKernels::kAvx512: return MatmulGroupAvx512(x, n, jobs, num_jobs, pool);
    case CpuKernels::kAvx2: return MatmulGroupAvx2(x, n, jobs, num_jobs, pool);
  }
}

}  // namespace

void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool, CpuKernels path) {
  if (n <= 0 || w.rows() <= 0) return;
  if (w.type() == WeightType::kInt8) return MatmulInt8(x, n, w, y, pool);  // kernels/matmul_int8_cpu.cc
  const MatmulJob job{&w, y};
  RunGroup(x, n, &job, 1, pool, path);
}

void Matmul(const float* x, int64_t n, const Matrix& w, float* y, ThreadPool* pool) {
  Matmul(x, n, w, y, pool, ActiveCpuKernels());
}

void MatmulMany(const float* x, int64_t n, std::initializer_list<std::pair<const Matrix*, float*>> products,
                ThreadPool* pool) {
  MatmulMany(x, n, products, pool, ActiveCpuKernels());
}

void MatmulMany(const float* x, int64_t n, std::initializer_list<std::pair<const Matrix*, float*>> products,
                ThreadPool* pool, CpuKernels path) {
  if (n <= 0) return;
  std::vector<MatmulJob> jobs;
  for (const auto& [w, y] : products)
    if (w->rows() > 0) jobs.push_back(MatmulJob{w, y});
  if (jobs.empty()) return;
  if (!Groupable(jobs.data(), static_cast<int>(jobs.size()))) {
    for (const MatmulJob& j : jobs) Matmul(x, n, *j.w, j.y, pool, path);
    return;
  }
  RunGroup(x, n, jobs.data(), static_cast<int>(jobs.size()), pool, path);
}

void MatmulSwiGlu(const float* x, int64_t n, const Matrix& w_gate, const Matrix& w_up, float* out, float* up,
                  ThreadPool* pool) {
  MatmulSwiGlu(x, n, w_gate, w_up, out, up, pool, ActiveCpuKernels());
}

void MatmulSwiGlu(const float* x, int64_t n, const Matrix& w_gate, const Matrix& w_up, float* out, float* up,
                  ThreadPool* pool, CpuKernels path) {
  if (n <= 0 || w_gate.rows() <= 0) return;
  const MatmulJob job{&w_gate, out, &w_up, up};
  if (!Groupable(&job, 1)) {
    Matmul(x, n, w_gate, out, pool, path);
    Matmul(x, n, w_up, up, pool, path);
    SwiGlu(out, up, out, n * w_gate.rows(), pool);
    return;
  }
  RunGroup(x, n, &job, 1, pool, path);
}

}  // namespace layerskip::cpu
