#pragma once
// The x86-64 instruction sets this host has (CPUID + XGETBV) and the CPU kernel path chosen from them
// once per process: the best the host has, or the one LAYERSKIP_CPU_KERNELS forces.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace layerskip::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  std::string Describe() const;  // "avx2 fma f16c avx512f ..." (the flags present)
};

// What this host supports (the OS must also save the AVX / AVX-512 register state).
const CpuFeatures& HostCpuFeatures();

// Kernel paths, each a superset of the one before.
enum class CpuKernels { kAvx2 = 0, kAvx512 = 1, kAvx512Bf16 = 2 };

const char* CpuKernelsName(CpuKernels k);  // "avx2", "avx512", "avx512-bf16"

// The best path `f` supports (AVX2 + FMA + F16C is the baseline this binary is built for).
CpuKernels BestCpuKernels(const CpuFeatures& f);

// Parses a path name; an error names the valid ones. A path above what `f` supports is an error naming
// the missing instructions.
absl::StatusOr<CpuKernels> ParseCpuKernels(std::string_view name, const CpuFeatures& f);

// The process's path: LAYERSKIP_CPU_KERNELS if set (validated by ParseCpuKernels), else the best the host
// has. Chosen on first use; an invalid variable is reported by CheckCpuKernels (model loading calls it)
// and meanwhile the kernels use AVX2.
absl::StatusOr<CpuKernels> SelectedCpuKernels();
absl::Status CheckCpuKernels();
CpuKernels ActiveCpuKernels();

// Tests: run the kernels on another path (one the host supports) until reset.
void SetCpuKernelsForTesting(CpuKernels k);
void ResetCpuKernelsForTesting();

}  // namespace layerskip::cpu
