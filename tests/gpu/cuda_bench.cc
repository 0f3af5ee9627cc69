// GPU benchmark (tests/gpu/run.sh runs it): decode tokens/s at batch 1 and 16 for random-weight models of
// Llama-3.2-1B and Llama-3-8B shape in bf16, as a fraction of the device read bandwidth measured in the
// same run, with eager launches and with one CUDA graph per decode step; then greedy self-speculative vs
// autoregressive decoding on the demo model.
//   cuda_bench [--shapes 1b,8b] [--steps N] [--model DIR] [--batches 1,16] [--kernels fused|legacy]
//              [--kv f32|bf16] [--no-fold-norm] [--profile] [--skip-demo]
//              [--new-kernels] [--gemv-plan default|wide|wide-pdl] [--head-argmax] [--attention split|fused]
// --new-kernels: every issue-17 kernel that is not yet the default (CudaModelOptions gemv_plan = wide,
// head_argmax, fused_attention; UseNewKernels); the other three flags turn them on one at a time.
// --profile: per decode step, each kernel's device time from CUDA events (in a graph replay, so without
// launch gaps, and eagerly), the launch overhead (eager step - graph step), and the bytes each kernel reads
// against the measured bandwidth.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/runtime/cuda/cuda_decode.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "engine/runtime/loaded_model.h"
#include "kernels/device_weight.h"
#include "kernels/fill.h"

namespace layerskip::cuda {
namespace {

LlamaConfig Shape(const std::string& name) {  // as `layerskip bench --random`
  LlamaConfig c;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 8192;
  c.vocab_size = 128256, c.num_attention_heads = 32, c.num_key_value_heads = 8, c.rope_theta = 500000.0f;
  if (name == "1b") {
    c.hidden_size = 2048, c.intermediate_size = 8192, c.num_hidden_layers = 16, c.head_dim = 64;
    c.tie_word_embeddings = true;
    c.rope_scaling = RopeScaling{"llama3", 32.0f, 1.0f, 4.0f, 8192};
  } else {
    c.hidden_size = 4096, c.intermediate_size = 14336, c.num_hidden_layers = 32, c.head_dim = 128;
  }
  return c;
}

// Best of 5 passes reading a 4 GiB buffer, in bytes/s.
absl::StatusOr<double> MeasureBandwidth(cudaStream_t s) {
  const int64_t bytes = int64_t{4} << 30;
  LS_ASSIGN_OR_RETURN(auto buf, DeviceBuffer<uint8_t>::Alloc(bytes));
  LS_ASSIGN_OR_RETURN(auto sum, DeviceBuffer<unsigned int>::Alloc(1));
  LS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(buf.get(), 1, bytes, s));
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  double best = 0;
  for (int i = 0; i < 6; ++i) {
    cudaEventRecord(a, s);
    LS_CUDA_RETURN_IF_ERROR(ReadBandwidthProbe(buf.get(), bytes, sum.get(), s));
    cudaEventRecord(b, s);
    LS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(b));
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    if (i > 0) best = std::max(best, bytes / (ms * 1e-3));  // pass 0 warms up
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

const char* PlanName(GemvPlanKind kind) {
  return kind == GemvPlanKind::kWide ? "wide" : kind == GemvPlanKind::kWidePdl ? "wide-pdl" : "default";
}

struct BenchOptions {
  int steps = 64;
  DType kv = DType::kF32;
  bool profile = false;
};

struct StepRates {
  double eager = 0;  // decode steps per second, one launch per op
  double graph = 0;  // decode steps per second, one CUDA graph launch per step (0: capture failed)
};

void PrintProfile(const char* what, const std::vector<KernelProfiler::Entry>& entries, double bandwidth) {
  double total = 0;
  for (const auto& e : entries) total += e.ms;
  std::printf("    %s: %.1f us of kernels per step\n", what, total * 1e3);
  std::printf("      %-22s %6s %10s %6s %10s %9s %7s\n", "kernel", "calls", "us", "%", "MB read", "GB/s", "of bw");
  for (const auto& e : entries) {
    const double gbs = e.ms > 0 ? e.bytes / (e.ms * 1e-3) / 1e9 : 0;
    std::printf("      %-22s %6d %10.1f %5.1f%% %10.2f %9.1f %6.1f%%\n", e.name.c_str(), e.calls, e.ms * 1e3,
                100.0 * e.ms / std::max(total, 1e-9), e.bytes / 1e6, gbs, 100.0 * gbs * 1e9 / bandwidth);
  }
}

// Decode `steps` tokens for `batch` sequences (each one token per step, ids fed back on the device), eagerly
// and as one CUDA graph per step; with --profile, per-kernel event times of one step of each.
absl::StatusOr<StepRates> DecodeStepsPerSecond(CudaModel& m, int batch, int steps, const BenchOptions& bo,
                                               double bandwidth) {
  const LlamaConfig& c = m.config();
  const int prompt = 8, D = c.hidden_size;
  LS_ASSIGN_OR_RETURN(auto cache, CudaKvCache::Create(c, 0, c.num_hidden_layers, batch, prompt + 2 * steps + 4, bo.kv));
  LS_ASSIGN_OR_RETURN(auto x, DeviceBuffer<float>::Alloc(static_cast<size_t>(batch) * prompt * D));
  LS_ASSIGN_OR_RETURN(auto logits, DeviceBuffer<float>::Alloc(static_cast<size_t>(batch) * c.vocab_size));
  LS_ASSIGN_OR_RETURN(auto ids, DeviceBuffer<int>::Alloc(batch));
  TokenBatch pre;
  std::vector<int> pre_ids;
  for (int s = 0; s < batch; ++s)
    for (int i = 0; i < prompt; ++i) pre.Add(s, i), pre_ids.push_back((s * 131 + i * 7) % c.vocab_size);
  LS_RETURN_IF_ERROR(m.Embed(pre_ids, x.get()));
  LS_RETURN_IF_ERROR(m.Forward(0, c.num_hidden_layers, pre, x.get(), cache.get()));
  std::vector<int> slots(batch), positions(static_cast<size_t>(steps) * batch);
  for (int s = 0; s < batch; ++s) slots[s] = s;
  for (int t = 0; t < steps; ++t)
    for (int s = 0; s < batch; ++s) positions[static_cast<size_t>(t) * batch + s] = prompt + t;
  LS_ASSIGN_OR_RETURN(auto slots_d, DeviceBuffer<int>::FromHost(slots));
  LS_ASSIGN_OR_RETURN(auto pos_d, DeviceBuffer<int>::FromHost(positions));
  LS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ids.get(), 0, batch * sizeof(int), m.stream()));
  LS_RETURN_IF_ERROR(m.Synchronize());
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < steps; ++t) {
    LS_RETURN_IF_ERROR(m.EmbedDevice(ids.get(), batch, x.get()));
    LS_RETURN_IF_ERROR(m.ForwardDevice(0, c.num_hidden_layers, batch, slots_d.get(),
                                       pos_d.get() + static_cast<size_t>(t) * batch, x.get(), cache.get()));
    LS_RETURN_IF_ERROR(m.ExitArgmax(x.get(), batch, logits.get(), ids.get()));
  }
  LS_RETURN_IF_ERROR(m.Synchronize());
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  StepRates rates;
  rates.eager = steps / sec;

  // The same steps at positions prompt + steps + t, one graph launch each (positions copied in first).
  LS_ASSIGN_OR_RETURN(auto step_pos, DeviceBuffer<int>::Alloc(batch));
  for (int& p : positions) p += steps;
  LS_ASSIGN_OR_RETURN(auto pos2_d, DeviceBuffer<int>::FromHost(positions));
  auto graph = m.CaptureDecodeStep(batch, ids.get(), slots_d.get(), step_pos.get(), x.get(), logits.get(), cache.get());
  if (!graph.ok()) {
    std::printf("    (no CUDA graph: %s)\n", graph.status().ToString().c_str());
    return rates;
  }
  auto set_positions = [&](int t) {
    return cudaMemcpyAsync(step_pos.get(), pos2_d.get() + static_cast<size_t>(t) * batch, batch * sizeof(int),
                           cudaMemcpyDeviceToDevice, m.stream());
  };
  LS_RETURN_IF_ERROR(m.Synchronize());
  const auto g0 = std::chrono::steady_clock::now();
  for (int t = 0; t < steps; ++t) {
    LS_CUDA_RETURN_IF_ERROR(set_positions(t));
    LS_RETURN_IF_ERROR((*graph)->Launch(m.stream()));
  }
  LS_RETURN_IF_ERROR(m.Synchronize());
  rates.graph = steps / std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count();
  if (!bo.profile) return rates;

  // One step with an event after every op: eagerly, then captured with the events as graph nodes. Both
  // rewrite the last step's position (the cache row is written again with a different token; timing only).
  LS_CUDA_RETURN_IF_ERROR(set_positions(steps - 1));
  KernelProfiler prof;
  struct Detach {  // the model never keeps a profiler past this function, whichever way it returns
    CudaModel& m;
    ~Detach() { m.set_profiler(nullptr); }
  } detach{m};
  m.set_profiler(&prof);
  absl::Status st = prof.Start(m.stream(), false);
  if (st.ok()) st = m.EmbedDevice(ids.get(), batch, x.get());
  if (st.ok()) st = m.ForwardDevice(0, c.num_hidden_layers, batch, slots_d.get(), step_pos.get(), x.get(), cache.get());
  if (st.ok()) st = m.ExitArgmax(x.get(), batch, logits.get(), ids.get());
  if (st.ok()) st = m.Synchronize();
  absl::StatusOr<std::vector<KernelProfiler::Entry>> eager = st.ok() ? prof.Collect() : st;
  auto timed = CudaGraph::Capture(m.stream(), [&]() -> absl::Status {
    LS_RETURN_IF_ERROR(prof.Start(m.stream(), true));
    LS_RETURN_IF_ERROR(m.EmbedDevice(ids.get(), batch, x.get()));
    LS_RETURN_IF_ERROR(
        m.ForwardDevice(0, c.num_hidden_layers, batch, slots_d.get(), step_pos.get(), x.get(), cache.get()));
    return m.ExitArgmax(x.get(), batch, logits.get(), ids.get());
  });
  m.set_profiler(nullptr);
  absl::StatusOr<std::vector<KernelProfiler::Entry>> in_graph = absl::UnknownError("no graph");
  if (!timed.ok()) in_graph = timed.status();
  if (timed.ok()) {
    for (int rep = 0; rep < 2; ++rep) {  // rep 0 warms up
      LS_CUDA_RETURN_IF_ERROR(set_positions(steps - 1));
      LS_RETURN_IF_ERROR((*timed)->Launch(m.stream()));
      LS_RETURN_IF_ERROR(m.Synchronize());
    }
    in_graph = prof.Collect();
  }
  const double eager_us = 1e6 / rates.eager, graph_us = 1e6 / rates.graph;
  std::printf("    step: eager %.1f us, graph %.1f us: launch overhead %.1f us per step (%.1f%% of the eager step)\n",
              eager_us, graph_us, eager_us - graph_us, 100.0 * (eager_us - graph_us) / eager_us);
  if (in_graph.ok()) {
    PrintProfile("kernels in a graph replay (events as graph nodes)", *in_graph, bandwidth);
    double total = 0;
    for (const auto& e : *in_graph) total += e.ms;
    std::printf("    graph step %.1f us - kernels %.1f us = %.1f us of gaps between kernels\n", graph_us, total * 1e3,
                graph_us - total * 1e3);
  } else {
    std::printf("    (no graph profile: %s)\n", in_graph.status().ToString().c_str());
  }
  if (eager.ok()) PrintProfile("kernels launched eagerly (times include waits for the host)", *eager, bandwidth);
  else std::printf("    (no eager profile: %s)\n", eager.status().ToString().c_str());
  return rates;
}

int Run(int argc, char** argv) {
  std::string shapes = "1b,8b", model_dir = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";
  std::string batches = "1,16";
  BenchOptions bo;
  CudaKernels kernels = CudaKernels::kFused;
  bool demo_section = true, fold_norm = true;
  CudaModelOptions issue17;  // the not-yet-default options (--new-kernels and the flags after it)
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--profile")) {
      bo.profile = true;
    } else if (!std::strcmp(argv[i], "--no-fold-norm")) {
      fold_norm = false;
    } else if (!std::strcmp(argv[i], "--new-kernels")) {
      UseNewKernels(&issue17);
    } else if (!std::strcmp(argv[i], "--head-argmax")) {
      issue17.head_argmax = true;
    } else if (has_value && !std::strcmp(argv[i], "--gemv-plan") &&
               (!std::strcmp(argv[i + 1], "default") || !std::strcmp(argv[i + 1], "wide") ||
                !std::strcmp(argv[i + 1], "wide-pdl"))) {
      const std::string plan = argv[++i];
      issue17.gemv_plan = plan == "wide"       ? GemvPlanKind::kWide
                          : plan == "wide-pdl" ? GemvPlanKind::kWidePdl
                                               : GemvPlanKind::kDefault;
    } else if (has_value && !std::strcmp(argv[i], "--attention") &&
               (!std::strcmp(argv[i + 1], "split") || !std::strcmp(argv[i + 1], "fused"))) {
      issue17.fused_attention = !std::strcmp(argv[++i], "fused");
    } else if (!std::strcmp(argv[i], "--skip-demo")) {
      demo_section = false;
    } else if (has_value && !std::strcmp(argv[i], "--shapes")) {
      shapes = argv[++i];
    } else if (has_value && !std::strcmp(argv[i], "--steps")) {
      bo.steps = std::atoi(argv[++i]);
    } else if (has_value && !std::strcmp(argv[i], "--model")) {
      model_dir = argv[++i];
    } else if (has_value && !std::strcmp(argv[i], "--batches")) {
      batches = argv[++i];
    } else if (has_value && !std::strcmp(argv[i], "--kernels") &&
               (!std::strcmp(argv[i + 1], "fused") || !std::strcmp(argv[i + 1], "legacy"))) {
      kernels = !std::strcmp(argv[++i], "fused") ? CudaKernels::kFused : CudaKernels::kLegacy;
    } else if (has_value && !std::strcmp(argv[i], "--kv") &&
               (!std::strcmp(argv[i + 1], "f32") || !std::strcmp(argv[i + 1], "bf16"))) {
      bo.kv = !std::strcmp(argv[++i], "bf16") ? DType::kBF16 : DType::kF32;
    } else {
      std::fprintf(stderr, "cuda_bench: bad argument %s (see the usage at the top of tests/gpu/cuda_bench.cc)\n",
                   argv[i]);
      return 2;
    }
  }
  std::vector<int> batch_list;
  for (size_t at = 0; at < batches.size();) {
    const size_t comma = std::min(batches.find(',', at), batches.size());
    const int b = std::atoi(batches.substr(at, comma - at).c_str());
    if (b < 1 || b > kDecodeAttentionMaxTokens) {
      std::fprintf(stderr, "cuda_bench: --batches takes sizes in 1..%d\n", kDecodeAttentionMaxTokens);
      return 2;
    }
    batch_list.push_back(b);
    at = comma + 1;
  }
  const int steps = bo.steps;
  if (steps < 1) {
    std::fprintf(stderr, "cuda_bench: --steps must be positive\n");
    return 2;
  }
  if (DeviceCount() == 0) {
    std::fprintf(stderr, "cuda_bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  cudaStream_t s;
  cudaStreamCreate(&s);
  auto bw = MeasureBandwidth(s);
  if (!bw.ok()) {
    std::fprintf(stderr, "cuda_bench: %s\n", bw.status().ToString().c_str());
    return 1;
  }
  std::printf("device %s: measured read bandwidth %.1f GB/s; kernels %s%s, KV cache %s; gemv plan %s, argmax in "
              "the head %s, decode attention %s\n",
              prop.name, *bw / 1e9, kernels == CudaKernels::kFused ? "fused" : "legacy",
              kernels == CudaKernels::kFused && !fold_norm ? " (norm not folded)" : "",
              bo.kv == DType::kBF16 ? "bf16" : "f32", PlanName(issue17.gemv_plan),
              issue17.head_argmax ? "on" : "off", issue17.fused_attention ? "one kernel" : "split-K + fold");
  for (const std::string name : {"1b", "8b"}) {
    if (shapes.find(name) == std::string::npos) continue;
    CudaModelOptions o;
    o.max_positions = 1024;
    o.max_batch = 64;
    o.kernels = kernels;
    o.fold_norm = fold_norm;
    o.gemv_plan = issue17.gemv_plan;
    o.head_argmax = issue17.head_argmax;
    o.fused_attention = issue17.fused_attention;
    auto m = CudaModel::CreateRandom(Shape(name), WeightType::kBF16, 1, o);
    if (!m.ok()) {
      std::fprintf(stderr, "cuda_bench: %s: %s\n", name.c_str(), m.status().ToString().c_str());
      return 1;
    }
    const double gib = (*m)->decode_read_bytes() / double(1 << 30);
    double one_row_graph = 0;
    for (int batch : batch_list) {
      BenchOptions warm_options = bo;
      warm_options.profile = false;
      auto warm = DecodeStepsPerSecond(**m, batch, 4, warm_options, *bw);
      std::printf("llama-%s bf16 batch %2d:\n", name.c_str(), batch);
      auto rate = warm.ok() ? DecodeStepsPerSecond(**m, batch, steps, bo, *bw) : warm;
      if (!rate.ok()) {
        std::fprintf(stderr, "cuda_bench: %s\n", rate.status().ToString().c_str());
        return 1;
      }
      for (auto [how, r] : {std::pair{"eager", rate->eager}, {"graph", rate->graph}}) {
        if (r <= 0) continue;
        const double achieved = r * (*m)->decode_read_bytes();
        std::printf("llama-%s bf16 batch %2d %s: %8.1f tokens/s (%6.1f steps/s, %7.1f us/step), weights %.2f "
                    "GiB/step, %7.1f GB/s = %.1f%% of measured\n",
                    name.c_str(), batch, how, r * batch, r, 1e6 / r, gib, achieved / 1e9, 100.0 * achieved / *bw);
      }
      if (batch == 1) one_row_graph = rate->graph;
      if (batch > 1 && one_row_graph > 0 && rate->graph > 0)
        std::printf("llama-%s bf16 batch %2d step / batch 1 step (graphs): %.2fx\n", name.c_str(), batch,
                    one_row_graph / rate->graph);
    }
  }
  if (!demo_section) {
    cudaStreamDestroy(s);
    return 0;
  }
  // Self-speculative vs autoregressive on the demo model (greedy, 128 new tokens).
  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 512;
  auto demo = LoadModelDir(model_dir, lo);
  if (!demo.ok()) {
    std::fprintf(stderr, "cuda_bench: %s\n", demo.status().ToString().c_str());
    return 1;
  }
  CudaModelOptions o;
  o.max_positions = 512;
  o.kernels = kernels;
  o.fold_norm = fold_norm;
  o.gemv_plan = issue17.gemv_plan;
  o.head_argmax = issue17.head_argmax;
  o.fused_attention = issue17.fused_attention;
  auto gm = CudaModel::Create(*(*demo)->weights, o);
  if (!gm.ok()) return 1;
  const LlamaConfig& c = (*gm)->config();
  // A real prompt when the model has a tokenizer (acceptance depends on the text), else fixed ids.
  std::vector<int> prompt;
  if ((*demo)->tokenizer)
    prompt = (*demo)->tokenizer->Encode("def read_config(path):\n    \"\"\"Read the configuration file at path and return");
  if (prompt.empty())
    for (int i = 0; i < 16; ++i) prompt.push_back((i * 37 + 3) % c.vocab_size);
  auto time_it = [&](auto&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const int new_tokens = 128;
  std::vector<int> ar_ids;
  double ar_sec = 0;
  for (int rep = 0; rep < 2; ++rep)  // rep 0 warms up
    ar_sec = time_it([&] {
      auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512, bo.kv);
      ar_ids = *GreedyAutoregressive(**gm, cache->get(), 0, prompt, new_tokens, c.num_hidden_layers);
    });
  // The fair baseline: autoregressive decoding with one CUDA graph per token (a round with d = 0).
  std::vector<int> graph_ids;
  double graph_sec = 0;
  for (int rep = 0; rep < 2; ++rep)
    graph_sec = time_it([&] {
      auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512, bo.kv);
      graph_ids = *GreedySelfSpeculative(**gm, cache->get(), 0, prompt, new_tokens, c.num_hidden_layers / 2, 0, true);
    });
  std::printf("demo %s: autoregressive %.1f tokens/s (eager launches), %.1f tokens/s (one CUDA graph per token, "
              "ids %s); speed-ups below are over the graph baseline\n",
              model_dir.c_str(), new_tokens / ar_sec, new_tokens / graph_sec, graph_ids == ar_ids ? "equal" : "DIFFER");
  ar_sec = graph_sec;
  for (int E : {1, 2, 3, 4, 6, 8}) {
    if (E >= c.num_hidden_layers) continue;
    for (int d : {2, 4, 6}) {
      SelfSpeculativeStats st;
      std::vector<int> ids;
      double sec = 0;
      for (int rep = 0; rep < 2; ++rep)
        sec = time_it([&] {
          st = {};
          auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512, bo.kv);
          ids = *GreedySelfSpeculative(**gm, cache->get(), 0, prompt, new_tokens, E, d, true, &st);
        });
      std::printf("  self-speculative E=%d d=%d: %.1f tokens/s, %.2fx, accepted %.1f%%, graph %s, ids %s\n", E, d,
                  new_tokens / sec, ar_sec / sec, 100.0 * st.accepted / std::max(1, st.drafted),
                  st.graph ? "yes" : "no", ids == ar_ids ? "equal" : "DIFFER");
    }
  }
  cudaStreamDestroy(s);
  return 0;
}

}  // namespace
}  // namespace layerskip::cuda

int main(int argc, char** argv) { return layerskip::cuda::Run(argc, argv); }
