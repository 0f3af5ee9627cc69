#include "kernels/cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace layerskip::cpu {
namespace {

uint64_t Xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = Xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & (uint64_t{3} << 17)) == (uint64_t{3} << 17);  // XTILECFG, XTILEDATA
  if (!os_avx) return f;
  f.fma = fma;
  f.f16c = f16c;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (os_avx512) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vnni = c & (1u << 11);
  }
  if (os_amx) {
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    f.amx_int8 = d & (1u << 25);
  }
  if (os_avx512) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = a & (1u << 5);
  }
  return f;
}

bool HasAvx512(const CpuFeatures& f) { return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq; }

// A pair packed in one int, so that it is fixed by one compare-and-swap: prompt * 4 + generated; -1: none.
int Pack(CpuKernelPair p) { return static_cast<int>(p.prompt) * 4 + static_cast<int>(p.generated); }
CpuKernelPair Unpack(int v) { return {static_cast<CpuKernels>(v / 4), static_cast<CpuKernels>(v % 4)}; }

std::atomic<int> g_override{-1};
std::atomic<int> g_chosen{-1};  // the process's pair once fixed (ActiveCpuKernelPair, ChooseCpuKernelsForModel)

}  // namespace

std::string CpuFeatures::Describe() const {
  std::vector<const char*> on;
  const std::pair<bool, const char*> all[] = {{avx2, "avx2"},         {fma, "fma"},           {f16c, "f16c"},
                                              {avx512f, "avx512f"},   {avx512bw, "avx512bw"}, {avx512vl, "avx512vl"},
                                              {avx512dq, "avx512dq"}, {avx512_bf16, "avx512_bf16"},
                                              {avx512_vnni, "avx512_vnni"}, {amx_tile, "amx_tile"},
                                              {amx_bf16, "amx_bf16"},   {amx_int8, "amx_int8"}};
  for (const auto& [has, name] : all)
    if (has) on.push_back(name);
  return on.empty() ? "none" : absl::StrJoin(on, " ");
}

const CpuFeatures& HostCpuFeatures() {
  static const CpuFeatures f = Detect();
  return f;
}

const char* CpuKernelsName(CpuKernels k) {
  switch (k) {
    case CpuKernels::kAvx2: return "avx2";
    case CpuKernels::kAvx512: return "avx512";
    case CpuKernels::kAvx512Bf16: return "avx512-bf16";
    case CpuKernels::kAmx: return "amx";
  }
  return "?";
}

std::string CpuKernelPairName(CpuKernelPair p) {
  if (p.prompt == p.generated) return CpuKernelsName(p.prompt);
  return absl::StrCat(CpuKernelsName(p.prompt), "/", CpuKernelsName(p.generated));
}

bool CpuKernelsSupported(CpuKernels k, const CpuFeatures& f) {
  switch (k) {
    case CpuKernels::kAvx2: return f.avx2 && f.fma && f.f16c;
    case CpuKernels::kAvx512: return HasAvx512(f);
    case CpuKernels::kAvx512Bf16: return HasAvx512(f) && f.avx512_bf16;
    case CpuKernels::kAmx: return HasAvx512(f) && f.avx512_bf16 && f.amx_tile && f.amx_bf16;
  }
  return false;
}

bool RoundsInputsToBf16(CpuKernels k) { return k == CpuKernels::kAvx512Bf16 || k == CpuKernels::kAmx; }

CpuKernels BestCpuKernels(const CpuFeatures& f) {
  if (!HasAvx512(f)) return CpuKernels::kAvx2;
  return f.avx512_bf16 ? CpuKernels::kAvx512Bf16 : CpuKernels::kAvx512;
}

absl::Status AmxPermission() {
  static const absl::Status status = []() -> absl::Status {
    const CpuFeatures& f = HostCpuFeatures();
    if (!f.amx_tile || !f.amx_bf16)
      return absl::FailedPreconditionError(absl::StrCat(
          "AMX-TILE and AMX-BF16 with their tile state enabled by the OS (XCR0) are missing (the CPU has: ",
          f.Describe(), ")"));
    constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
      return absl::FailedPreconditionError(
          absl::StrCat("Linux refused this process the AMX tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, "
                       "XFEATURE_XTILEDATA): ", std::strerror(errno), "; needs Linux 5.16 or later)"));
    unsigned long permitted = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &permitted) != 0 || !(permitted & (1ul << kXfeatureXtiledata)))
      return absl::FailedPreconditionError("Linux did not grant this process the AMX tile state (ARCH_GET_XCOMP_PERM)");
    return absl::OkStatus();
  }();
  return status;
}

absl::StatusOr<CpuKernels> ParseCpuKernels(std::string_view name_view, const CpuFeatures& f) {
  const std::string name(name_view);
  CpuKernels k;
  if (name == "avx2") k = CpuKernels::kAvx2;
  else if (name == "avx512") k = CpuKernels::kAvx512;
  else if (name == "avx512-bf16") k = CpuKernels::kAvx512Bf16;
  else if (name == "amx") k = CpuKernels::kAmx;
  else
    return absl::InvalidArgumentError(absl::StrCat("LAYERSKIP_CPU_KERNELS='", name,
                                                   "' is not a CPU kernel path (avx2, avx512, avx512-bf16, amx; a pair "
                                                   "prompt/generated such as amx/avx512-bf16)"));
  if (!CpuKernelsSupported(k, f)) {
    const char* needs = k == CpuKernels::kAvx2     ? "AVX2, FMA and F16C"
                        : k == CpuKernels::kAvx512 ? "AVX-512 F/BW/VL/DQ"
                        : k == CpuKernels::kAvx512Bf16
                            ? "AVX-512 F/BW/VL/DQ and AVX512_BF16"
                            : "AVX-512 F/BW/VL/DQ, AVX512_BF16, AMX-TILE and AMX-BF16 (with the OS's tile state)";
    return absl::FailedPreconditionError(absl::StrCat("LAYERSKIP_CPU_KERNELS=", name, " needs ", needs,
                                                      ", which this CPU lacks (it has: ", f.Describe(),
                                                      "; best path here: ", CpuKernelsName(BestCpuKernels(f)), ")"));
  }
  if (k == CpuKernels::kAmx) {
    const absl::Status permitted = AmxPermission();
    if (!permitted.ok())
      return absl::FailedPreconditionError(
          absl::StrCat("LAYERSKIP_CPU_KERNELS=amx is unavailable: ", permitted.message()));
  }
  return k;
}

absl::StatusOr<CpuKernelPair> ParseCpuKernelPair(std::string_view value, const CpuFeatures& f) {
  const size_t slash = value.find('/');
  if (slash == std::string_view::npos) {
    auto k = ParseCpuKernels(value, f);
    if (!k.ok()) return k.status();
    return CpuKernelPair{*k, *k};
  }
  auto prompt = ParseCpuKernels(value.substr(0, slash), f);
  if (!prompt.ok()) return prompt.status();
  auto generated = ParseCpuKernels(value.substr(slash + 1), f);
  if (!generated.ok()) return generated.status();
  return CpuKernelPair{*prompt, *generated};
}

absl::StatusOr<CpuKernelPair> SelectedCpuKernels() {
  static const absl::StatusOr<CpuKernelPair> selected = [] {
    const char* env = std::getenv("LAYERSKIP_CPU_KERNELS");
    if (env == nullptr || *env == '\0') {
      const CpuKernels best = BestCpuKernels(HostCpuFeatures());
      return absl::StatusOr<CpuKernelPair>(CpuKernelPair{best, best});
    }
    return ParseCpuKernelPair(env, HostCpuFeatures());
  }();
  return selected;
}

absl::Status CheckCpuKernels() {
  const CpuFeatures& f = HostCpuFeatures();
  if (!f.avx2 || !f.fma || !f.f16c)
    return absl::FailedPreconditionError(absl::StrCat("this build needs AVX2, FMA and F16C; the CPU has: ", f.Describe()));
  return SelectedCpuKernels().status();
}

CpuKernelPair DefaultCpuKernelsForModel(const CpuFeatures& f, bool amx_permitted, int64_t bf16_bytes,
                                        int64_t llc_bytes) {
  const CpuKernels best = BestCpuKernels(f);
  if (!amx_permitted || !CpuKernelsSupported(CpuKernels::kAmx, f) || bf16_bytes <= 0) return {best, best};
  return {CpuKernels::kAmx, bf16_bytes > llc_bytes ? CpuKernels::kAmx : best};
}

int64_t LastLevelCacheBytes() {
  for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) return v;
  }
  return int64_t{32} << 20;
}

void ChooseCpuKernelsForModel(int64_t bf16_bytes) {
  const char* env = std::getenv("LAYERSKIP_CPU_KERNELS");
  if (env != nullptr && *env != '\0') return;  // forced: SelectedCpuKernels
  if (g_chosen.load(std::memory_order_acquire) >= 0) return;
  const CpuFeatures& f = HostCpuFeatures();
  const int64_t llc = LastLevelCacheBytes();
  // Ask Linux for the tiles only when the rule would pick them (a model with bf16 matmuls).
  const bool amx = bf16_bytes > 0 && CpuKernelsSupported(CpuKernels::kAmx, f) && AmxPermission().ok();
  int unset = -1;
  g_chosen.compare_exchange_strong(unset, Pack(DefaultCpuKernelsForModel(f, amx, bf16_bytes, llc)),
                                   std::memory_order_acq_rel);
}

CpuKernelPair ActiveCpuKernelPair() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0) return Unpack(o);
  int chosen = g_chosen.load(std::memory_order_acquire);
  if (chosen >= 0) return Unpack(chosen);
  // First use before any model chose: fix the variable's (or the best) pair.
  g_chosen.compare_exchange_strong(chosen, Pack(SelectedCpuKernels().value_or(CpuKernelPair{})),
                                   std::memory_order_acq_rel);
  return Unpack(g_chosen.load(std::memory_order_acquire));
}

CpuKernels ActiveCpuKernels() { return ActiveCpuKernelPair().generated; }
CpuKernels PromptCpuKernels() { return ActiveCpuKernelPair().prompt; }

void SetCpuKernelsForTesting(CpuKernels k) { g_override.store(Pack({k, k})); }
void SetCpuKernelPairForTesting(CpuKernelPair p) { g_override.store(Pack(p)); }
void ResetCpuKernelsForTesting() { g_override.store(-1); }

}  // namespace layerskip::cpu
