// GPU benchmark (tests/gpu/run.sh runs it): decode tokens/s at batch 1 and 16 for random-weight models of
// Llama-3.2-1B and Llama-3-8B shape in bf16, as a fraction of the device read bandwidth measured in the
// same run; then greedy self-speculative vs autoregressive decoding on the demo model.
//   cuda_bench [--shapes 1b,8b] [--steps N] [--model DIR]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/runtime/cuda/cuda_decode.h"
#include "engine/runtime/cuda/cuda_model.h"
#include "engine/runtime/loaded_model.h"

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

// Decode `steps` tokens for `batch` sequences (each one token per step, ids fed back on the device).
absl::StatusOr<double> DecodeTokensPerSecond(CudaModel& m, int batch, int steps) {
  const LlamaConfig& c = m.config();
  const int prompt = 8, D = c.hidden_size;
  LS_ASSIGN_OR_RETURN(auto cache, CudaKvCache::Create(c, 0, c.num_hidden_layers, batch, prompt + steps + 1));
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
    LS_RETURN_IF_ERROR(m.ExitHead(x.get(), batch, logits.get()));
    LS_RETURN_IF_ERROR(m.Argmax(logits.get(), batch, ids.get()));
  }
  LS_RETURN_IF_ERROR(m.Synchronize());
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return steps / sec;  // decode steps per second (x batch = tokens/s)
}

int Run(int argc, char** argv) {
  std::string shapes = "1b,8b", model_dir = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";
  int steps = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--model")) model_dir = argv[i + 1];
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
  std::printf("device %s: measured read bandwidth %.1f GB/s\n", prop.name, *bw / 1e9);
  for (const std::string name : {"1b", "8b"}) {
    if (shapes.find(name) == std::string::npos) continue;
    CudaModelOptions o;
    o.max_positions = 1024;
    o.max_batch = 64;
    auto m = CudaModel::CreateRandom(Shape(name), WeightType::kBF16, 1, o);
    if (!m.ok()) {
      std::fprintf(stderr, "cuda_bench: %s: %s\n", name.c_str(), m.status().ToString().c_str());
      return 1;
    }
    const double gib = (*m)->decode_read_bytes() / double(1 << 30);
    for (int batch : {1, 16}) {
      auto warm = DecodeTokensPerSecond(**m, batch, 4);
      auto rate = warm.ok() ? DecodeTokensPerSecond(**m, batch, steps) : warm;
      if (!rate.ok()) {
        std::fprintf(stderr, "cuda_bench: %s\n", rate.status().ToString().c_str());
        return 1;
      }
      const double achieved = *rate * (*m)->decode_read_bytes();
      std::printf("llama-%s bf16 batch %2d: %8.1f tokens/s (%6.1f steps/s), weights %.2f GiB/step, %7.1f GB/s = "
                  "%.1f%% of measured\n",
                  name.c_str(), batch, *rate * batch, *rate, gib, achieved / 1e9, 100.0 * achieved / *bw);
    }
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
      auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
      ar_ids = *GreedyAutoregressive(**gm, cache->get(), 0, prompt, new_tokens, c.num_hidden_layers);
    });
  // The fair baseline: autoregressive decoding with one CUDA graph per token (a round with d = 0).
  std::vector<int> graph_ids;
  double graph_sec = 0;
  for (int rep = 0; rep < 2; ++rep)
    graph_sec = time_it([&] {
      auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
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
          auto cache = CudaKvCache::Create(c, 0, c.num_hidden_layers, 1, 512);
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
