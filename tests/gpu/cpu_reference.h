#pragma once
// GPU tests compare against the CPU engine with tolerances (and greedy ids) set for f32 matmul inputs. The
// avx512-bf16 CPU kernel path (kernels/cpu_features.h), the default on hosts with AVX512_BF16, rounds those
// inputs to bf16; so these tests pin the CPU reference to AVX2 before any kernel runs, for this process and
// the worker processes it starts (an explicit LAYERSKIP_CPU_KERNELS is left as set).
#include <cstdlib>

namespace layerskip::testing {

[[maybe_unused]] static const bool kCpuReferenceAvx2 = (setenv("LAYERSKIP_CPU_KERNELS", "avx2", /*overwrite=*/0), true);

}  // namespace layerskip::testing
