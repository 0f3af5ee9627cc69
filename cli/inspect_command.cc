// layerskip inspect: config, parameter count, bytes and dtypes of a checkpoint directory, then a timed load
// (--dtype, --weights) with its peak resident set.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "cli/commands.h"
#include "engine/model/checkpoint_limits.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"
#include "engine/runtime/checkpoint_dtype.h"
#include "engine/runtime/kv_budget.h"
#include "engine/runtime/loaded_model.h"
#include "absl/strings/str_format.h"
#include "engine/util/cpu_budget.h"
#include "engine/util/status.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul_int8_cpu.h"

namespace layerskip::cli {
namespace {

// VmHWM (peak resident set) of this process in bytes, from /proc/self/status; -1 when unknown.
int64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:   1234 kB"
  return -1;
}

// Loads the weights as the serving commands would and prints the time, the peak RSS and how much was used in
// place from the memory map.
absl::Status TimedLoad(const Flags& flags, const std::string& dir) {
  LS_ASSIGN_OR_RETURN(ModelLoadOptions load, LoadOptionsFromFlags(flags));
  LoadOptions o;
  o.type = load.type;
  o.int8_layers = load.int8_layers;
  o.in_place = load.in_place;
  LoadStats stats;
  o.stats = &stats;
  LS_ASSIGN_OR_RETURN(ModelWeights w, LoadModelWeights(dir, o));
  ChooseCpuKernelsFor(w);
  std::printf("weights: %s (layers), embedding and head %s; cpu kernels for this model: %s", w.weights_name(),
              WeightTypeName(w.type), cpu::CpuKernelPairName(cpu::ActiveCpuKernelPair()).c_str());
  if (w.int8_layers) std::printf("; int8 kernels: %s", cpu::Int8PathName(cpu::BestInt8Path()));
  std::printf("\n");
  std::printf("load: %.3f s, peak RSS %.1f MiB, weights in memory %.1f MiB (in place from the map %.1f MiB, "
              "converted %.1f MiB, misaligned tensors %d)\n",
              stats.seconds, PeakRssBytes() / 1048576.0, w.bytes() / 1048576.0, stats.in_place_bytes / 1048576.0,
              stats.copied_bytes / 1048576.0, stats.misaligned);
  return absl::OkStatus();
}

absl::Status Inspect(const Flags& flags) {
  if (!flags.Has("model")) return absl::InvalidArgumentError("--model DIR is required");
  const std::string dir = flags.Get("model");
  LS_ASSIGN_OR_RETURN(LlamaConfig c, LoadLlamaConfig(dir));
  LS_ASSIGN_OR_RETURN(auto files, CheckpointFiles::Open(dir));
  // config.json must describe the tensors present (layer count, shapes) before its numbers are reported.
  LS_RETURN_IF_ERROR(CheckCheckpointTensors(dir, c, *files, LoadOptions{}, 0, c.num_hidden_layers));
  int64_t params = 0;
  size_t bytes = 0;
  std::map<std::string, int64_t> per_dtype;
  for (const TensorView* t : files->All()) {
    params += t->numel();
    bytes += t->nbytes;
    per_dtype[DTypeName(t->dtype)] += t->numel();
  }
  std::printf("model: %s\n", dir.c_str());
  std::printf("architecture: %s\n", c.architecture.c_str());
  std::printf("layers: %d  hidden: %d  intermediate: %d  heads: %d  kv_heads: %d  head_dim: %d\n",
              c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
              c.num_key_value_heads, c.head_dim);
  std::printf("vocab: %d  max_positions: %d  rms_norm_eps: %g  rope_theta: %g  tied_embeddings: %s\n", c.vocab_size,
              c.max_position_embeddings, c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings ? "yes" : "no");
  if (c.rope_scaling)
    std::printf("rope_scaling: %s factor %g low %g high %g original_max %d\n", c.rope_scaling->rope_type.c_str(),
                c.rope_scaling->factor, c.rope_scaling->low_freq_factor, c.rope_scaling->high_freq_factor,
                c.rope_scaling->original_max_position_embeddings);
  std::printf("bos: %s  eos:", c.bos_token_id ? std::to_string(*c.bos_token_id).c_str() : "none");
  for (int e : c.eos_token_ids) std::printf(" %d", e);
  std::printf("\nparameters: %lld (%.3f B)\nbytes on disk (tensor data): %zu (%.1f MiB)\n",
              static_cast<long long>(params), params / 1e9, bytes, bytes / 1048576.0);
  std::printf("dtypes:");
  for (const auto& [name, n] : per_dtype) std::printf(" %s=%lld", name.c_str(), static_cast<long long>(n));
  std::printf("\nin memory: bf16 %.1f MiB, f32 %.1f MiB\n", params * 2 / 1048576.0, params * 4 / 1048576.0);
  // What `generate`, `bench`, `logits` and the service run it as without --dtype (--dtype auto).
  LS_ASSIGN_OR_RETURN(CheckpointDType d, CheckpointDTypeOf(dir));
  std::printf("runs as: %s (%s)%s%s\n", WeightTypeName(d.type), d.source.c_str(), d.notice.empty() ? "" : "; ",
              d.notice.c_str());
  // The KV cache the host engine allocates (f32 K and V; every slot the whole context), as the service sizes it.
  LS_ASSIGN_OR_RETURN(int64_t slots, flags.GetInt("num-slots", 1));
  LS_ASSIGN_OR_RETURN(int64_t context, flags.GetInt("max-context", 4096));
  if (slots < 1 || slots > 4096) return absl::InvalidArgumentError("--num-slots must be in [1, 4096]");
  if (context < 2 || context > (1 << 20)) return absl::InvalidArgumentError("--max-context must be in [2, 1048576]");
  KvBudgetRequest kv;
  kv.num_slots = static_cast<int>(slots);
  kv.context = static_cast<int>(std::min<int64_t>(context, c.max_position_embeddings));
  kv.bytes_per_position = int64_t{2} * c.num_hidden_layers * c.kv_dim() * static_cast<int64_t>(sizeof(float));
  LS_ASSIGN_OR_RETURN(kv.kv_positions, flags.GetInt("kv-cache-positions", 0));
  kv.full_context_slots = true;
  LS_ASSIGN_OR_RETURN(KvBudget b, PlanKvBudget(kv));
  std::printf("kv cache: %lld bytes per position (f32 K and V, %d layers); %d slots x %d positions = %.1f MiB, "
              "%lld positions for running sequences\n",
              static_cast<long long>(kv.bytes_per_position), c.num_hidden_layers, b.num_slots, b.positions_per_slot,
              b.bytes / 1048576.0, static_cast<long long>(b.total_positions));
  LS_ASSIGN_OR_RETURN(cpu::CpuKernelPair kernels, cpu::SelectedCpuKernels());
  std::printf("cpu: %s\ncpu kernels: %s (LAYERSKIP_CPU_KERNELS=avx2|avx512|avx512-bf16|amx forces one for every "
              "token, PROMPT/GENERATED such as amx/avx512-bf16 a pair; unforced, prompts of bf16 weights run on amx "
              "where the host has it, generated tokens too when the weights exceed the last-level cache, %lld MiB)\n",
              cpu::HostCpuFeatures().Describe().c_str(), cpu::CpuKernelPairName(kernels).c_str(),
              static_cast<long long>(cpu::LastLevelCacheBytes() >> 20));
  const auto quota = CgroupCpuLimit();
  std::printf("default threads: %d (affinity mask and cgroup CPU quota: %s)\n", DefaultThreadCount(),
              quota ? absl::StrFormat("%.2f CPUs", *quota).c_str() : "none");
  std::fflush(stdout);
  return TimedLoad(flags, dir);
}

}  // namespace

int RunInspect(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2, {"model", "num-slots", "max-context", "kv-cache-positions", "dtype", "weights"}, {"no-mmap"});
  if (!flags.ok()) return Fail("inspect", flags.status());
  absl::Status s = Inspect(*flags);
  return s.ok() ? 0 : Fail("inspect", s);
}

}  // namespace layerskip::cli
