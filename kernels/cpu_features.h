#pragma once
// The x86-64 instruction sets this host has (CPUID + XGETBV) and the CPU kernel paths chosen from them
// once per process: a pair, one path for prompt tokens and one for generated tokens (docs/engine.md,
// "Choosing the kernel paths"), the best the host has for the model, or what LAYERSKIP_CPU_KERNELS forces.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace layerskip::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  // AMX (CPUID leaf 7 EDX bits 24 AMX-TILE, 22 AMX-BF16, 25 AMX-INT8) with the OS enabling the tile state
  // in XCR0 (bits 17 XTILECFG, 18 XTILEDATA). Linux also wants a per-process request: AmxPermission.
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  std::string Describe() const;  // "avx2 fma f16c avx512f ..." (the flags present)
};

// What this host supports (the OS must also save the AVX / AVX-512 register state).
const CpuFeatures& HostCpuFeatures();

// Kernel paths, each needing the instructions of the one before. kAmx: bf16 weights through AMX-BF16
// tiles (kernels/matmul_amx_cpu.cc), everything else as kAvx512Bf16.
enum class CpuKernels { kAvx2 = 0, kAvx512 = 1, kAvx512Bf16 = 2, kAmx = 3 };

const char* CpuKernelsName(CpuKernels k);  // "avx2", "avx512", "avx512-bf16", "amx"

// Whether `f` has the instructions path k needs (for kAmx, not yet whether Linux permits the tiles).
bool CpuKernelsSupported(CpuKernels k, const CpuFeatures& f);

// Whether path k rounds a bf16-weight matmul's input x to bf16 (avx512-bf16 and amx).
bool RoundsInputsToBf16(CpuKernels k);

// The process's pair of paths: `prompt` computes the rows of prompt tokens (a sequence's positions below
// its prompt length), `generated` every other row (decode steps, drafts, verification) and the exit and
// draft heads. Each token is always computed on its role's path, whichever call computes it, so each
// path's batch invariance keeps self-speculation lossless (engine/runtime/token_batch.h TokenRole).
struct CpuKernelPair {
  CpuKernels prompt = CpuKernels::kAvx2;
  CpuKernels generated = CpuKernels::kAvx2;
  bool operator==(const CpuKernelPair& o) const { return prompt == o.prompt && generated == o.generated; }
};
// "amx/avx512-bf16" (prompt/generated), or one name when both are the same path.
std::string CpuKernelPairName(CpuKernelPair p);

// The best path for `f` regardless of the model (AVX2 + FMA + F16C is the baseline this binary is built
// for): at most kAvx512Bf16; AMX is chosen per model (DefaultCpuKernelsForModel).
CpuKernels BestCpuKernels(const CpuFeatures& f);

// The default pair for a model whose bf16 matmul weights are `bf16_bytes` (0: none, e.g. f32 or int8
// weights): where the host has AMX (amx_permitted: AmxPermission() is ok) and bf16_bytes > 0, prompts
// run on kAmx (prefill is matrix-matrix work, ~2.5-4x faster on the tiles); generated tokens on kAmx too
// when the weights exceed `llc_bytes`, the last-level cache (decode then streams them from memory, where
// AMX decodes as fast as AVX512-BF16), else on BestCpuKernels(f) (cache-resident weights decode faster on
// AVX512-BF16). Without AMX both are BestCpuKernels(f). docs/engine.md, "Choosing the kernel paths".
CpuKernelPair DefaultCpuKernelsForModel(const CpuFeatures& f, bool amx_permitted, int64_t bf16_bytes,
                                        int64_t llc_bytes);

// This host's last-level cache in bytes (sysconf; 32 MiB when unknown).
int64_t LastLevelCacheBytes();

// Model loading calls this once the weights are known: without LAYERSKIP_CPU_KERNELS, the process's pair
// becomes DefaultCpuKernelsForModel(host, ...) unless a pair is already fixed (by an earlier model or by
// a kernel run before any model: the first choice holds for the life of the process, so every token of a
// role is computed on one path and batch invariance holds).
void ChooseCpuKernelsForModel(int64_t bf16_bytes);

// Asks Linux once per process for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), which every thread must have before its first tile instruction. An error says why
// the tiles are unavailable (CPU without AMX, kernel without AMX support, or the request refused).
absl::Status AmxPermission();

// Parses a path name; an error names the valid ones. A path `f` does not support is an error naming
// the missing instructions; for "amx" also one where Linux refuses this process the tiles (AmxPermission).
absl::StatusOr<CpuKernels> ParseCpuKernels(std::string_view name, const CpuFeatures& f);
// LAYERSKIP_CPU_KERNELS's syntax: "<path>" forces both roles onto one path, "<prompt>/<generated>" (e.g.
// "amx/avx512-bf16") forces the pair; each name as ParseCpuKernels.
absl::StatusOr<CpuKernelPair> ParseCpuKernelPair(std::string_view value, const CpuFeatures& f);

// LAYERSKIP_CPU_KERNELS if set (validated by ParseCpuKernelPair), else BestCpuKernels for both roles. An
// invalid variable is reported by CheckCpuKernels (model loading calls it) and meanwhile the kernels use
// AVX2. ActiveCpuKernelPair: the process's pair, fixed on first use or by ChooseCpuKernelsForModel,
// whichever is first (a test override aside); ActiveCpuKernels is its generated path (the heads' and any
// caller's that does not name a role), PromptCpuKernels its prompt path.
absl::StatusOr<CpuKernelPair> SelectedCpuKernels();
absl::Status CheckCpuKernels();
CpuKernelPair ActiveCpuKernelPair();
CpuKernels ActiveCpuKernels();
CpuKernels PromptCpuKernels();

// Tests: run the kernels on another path or pair (that the host supports) until reset.
void SetCpuKernelsForTesting(CpuKernels k);
void SetCpuKernelPairForTesting(CpuKernelPair p);
void ResetCpuKernelsForTesting();

}  // namespace layerskip::cpu
