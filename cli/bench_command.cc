// layerskip bench: prefill and decode speed against the machine's measured read bandwidth, and the
// self-speculative sweep (cli/bench_speculative.cc).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/bandwidth.h"
#include "cli/bench.h"
#include "cli/commands.h"
#include "engine/model/quantize_int8.h"
#include "engine/util/rng.h"
#include "engine/util/status.h"
#include "kernels/cpu_features.h"

namespace layerskip::cli {
namespace {

absl::StatusOr<LlamaConfig> PresetConfig(const std::string& name) {
  LlamaConfig c;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 8192;
  if (name == "llama3.2-1b") {
    c.vocab_size = 128256, c.hidden_size = 2048, c.intermediate_size = 8192, c.num_hidden_layers = 16;
    c.num_attention_heads = 32, c.num_key_value_heads = 8, c.head_dim = 64, c.rope_theta = 500000.0f;
    c.tie_word_embeddings = true;
    c.rope_scaling = RopeScaling{"llama3", 32.0f, 1.0f, 4.0f, 8192};
  } else if (name == "llama3-8b") {
    c.vocab_size = 128256, c.hidden_size = 4096, c.intermediate_size = 14336, c.num_hidden_layers = 32;
    c.num_attention_heads = 32, c.num_key_value_heads = 8, c.head_dim = 128, c.rope_theta = 500000.0f;
  } else if (name == "tiny") {
    c.vocab_size = 4096, c.hidden_size = 256, c.intermediate_size = 768, c.num_hidden_layers = 8;
    c.num_attention_heads = 8, c.num_key_value_heads = 4, c.head_dim = 32, c.rope_theta = 10000.0f;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--random: unknown shape '", name, "' (llama3.2-1b, llama3-8b, tiny)"));
  }
  return c;
}

// Bytes of weights one decode step reads: every layer matrix and the LM head (one embedding row aside).
size_t DecodeBytes(const ModelWeights& w) {
  size_t bytes = w.lm_head ? w.lm_head->bytes() : 0;
  for (const LayerWeights& l : w.layers)
    for (const auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) bytes += (*m)->bytes();
  return bytes;
}

absl::Status Bench(const Flags& flags) {
  LS_ASSIGN_OR_RETURN(const DeviceSpec device, DeviceFromFlags(flags));
  LS_RETURN_IF_ERROR(cpu::CheckCpuKernels());
  LS_ASSIGN_OR_RETURN(ModelLoadOptions load, LoadOptionsFromFlags(flags));
  // --kv-cache-positions N: no sequence holds more than N positions (each slot's cache is that long).
  if (load.kv_positions > 0) load.max_context = static_cast<int>(std::min<int64_t>(load.max_context, std::max<int64_t>(2, load.kv_positions)));
  LS_ASSIGN_OR_RETURN(int64_t prompt_tokens, flags.GetInt("prompt-tokens", 64));
  LS_ASSIGN_OR_RETURN(int64_t decode_tokens, flags.GetInt("decode-tokens", 32));
  LS_ASSIGN_OR_RETURN(int64_t batch, flags.GetInt("batch", 1));
  // Untimed runs of the same prompts first (page-in of mapped weights, caches, thread start-up), as
  // llama-bench and torch benchmarks warm up.
  LS_ASSIGN_OR_RETURN(int64_t warmup, flags.GetInt("warmup", 1));
  if (prompt_tokens < 1 || decode_tokens < 2 || batch < 1 || batch > 256 || warmup < 0 || warmup > 16)
    return absl::InvalidArgumentError(
        "--prompt-tokens >= 1, --decode-tokens >= 2, --batch in [1, 256], --warmup in [0, 16]");
  load.max_context = static_cast<int>(std::max<int64_t>(load.max_context, prompt_tokens + decode_tokens + 16));
  std::unique_ptr<LoadedModel> m;
  std::string name;
  if (flags.Has("model") == flags.Has("random")) return absl::InvalidArgumentError("give one of --model DIR or --random SHAPE");
  if (flags.Has("model")) {
    name = flags.Get("model");
    LS_ASSIGN_OR_RETURN(m, LoadModelDir(name, load));
  } else {
    name = "random " + flags.Get("random");
    LS_ASSIGN_OR_RETURN(LlamaConfig c, PresetConfig(flags.Get("random")));
    std::fprintf(stderr, "generating random %s weights...\n", flags.Get("random").c_str());
    ModelWeights w = RandomModelWeights(c, load.type, 1234);
    // --zero-layers-from E: layers [E, L) write nothing to the residual stream (o_proj and down_proj zero),
    // so the exit after layer E-1 is the full model's and every greedy draft at exit layer >= E is accepted.
    LS_ASSIGN_OR_RETURN(int64_t zero_from, flags.GetInt("zero-layers-from", c.num_hidden_layers));
    if (zero_from < 1 || zero_from > c.num_hidden_layers)
      return absl::InvalidArgumentError(absl::StrCat("--zero-layers-from must be in [1, ", c.num_hidden_layers, "]"));
    for (int l = static_cast<int>(zero_from); l < c.num_hidden_layers; ++l)
      for (Matrix* mat : {w.layers[l].wo.get(), w.layers[l].w_down.get()}) std::memset(mat->data(), 0, mat->bytes());
    if (zero_from < c.num_hidden_layers) name += absl::StrCat(", layers [", zero_from, ", ", c.num_hidden_layers, ") zeroed");
    if (load.int8_layers) QuantizeLayersInt8(w);
    m = WrapWeights(std::make_shared<const ModelWeights>(std::move(w)), load);
  }
  const LlamaConfig& c = m->weights->config;
  const int L = c.num_hidden_layers;

  // Prompts: the tokenizer's encoding of a code snippet repeated, else seeded random ids.
  std::vector<std::vector<int>> prompts(batch);
  Rng rng(42);
  for (int64_t b = 0; b < batch; ++b) {
    if (m->tokenizer) {
      std::string text;
      const char* snippets[] = {"def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
                                "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, path):\n",
                                "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n"};
      while (static_cast<int64_t>(m->tokenizer->Encode(text, true).size()) < prompt_tokens) text += snippets[(b + text.size()) % 3];
      prompts[b] = m->tokenizer->Encode(text, true);
      prompts[b].resize(prompt_tokens);
    } else {
      for (int64_t i = 0; i < prompt_tokens; ++i) prompts[b].push_back(static_cast<int>(rng.Next() % c.vocab_size));
    }
  }

  const std::string mode = flags.Get("mode", "autoregressive");
  if (mode != "autoregressive" && mode != "self-speculative")
    return absl::InvalidArgumentError(absl::StrCat("--mode: unknown bench mode '", mode, "'"));
  std::printf("model: %s (%d layers, hidden %d, vocab %d, %s weights), threads %d, batch %lld, cpu kernels %s\n",
              name.c_str(), L, c.hidden_size, c.vocab_size, m->weights->weights_name(), m->pool->num_threads(),
              static_cast<long long>(batch), cpu::CpuKernelPairName(cpu::ActiveCpuKernelPair()).c_str());
  DecodeOptions ar;
  // The machine's bandwidth is probed before and after decoding; the higher of the two counts, so a noisy
  // moment during one probe cannot flatter the fraction.
  const double bw_before = mode == "autoregressive" ? MeasureReadBandwidth(m->pool.get()) : 0.0;
  if (mode == "self-speculative") {
    // --prompts-file: prompts separated by lines "----", each measured on its own (batch 1).
    std::vector<std::vector<std::vector<int>>> cases;
    if (flags.Has("prompts-file")) {
      if (!m->tokenizer) return absl::InvalidArgumentError("--prompts-file needs a model with a tokenizer");
      std::ifstream in(flags.Get("prompts-file"));
      if (!in) return absl::InvalidArgumentError(absl::StrCat("--prompts-file: cannot read ", flags.Get("prompts-file")));
      std::string line, text;
      auto flush = [&] {
        while (!text.empty() && text.back() == '\n') text.pop_back();
        if (!text.empty()) cases.push_back({m->tokenizer->Encode(text, true)});
        text.clear();
      };
      while (std::getline(in, line)) {
        if (line == "----") flush();
        else text += line + "\n";
      }
      flush();
      if (cases.empty()) return absl::InvalidArgumentError("--prompts-file has no prompts");
    } else {
      cases.push_back(prompts);
    }
    const std::string id = flags.Has("model") ? std::filesystem::absolute(flags.Get("model")).string() : name;
    size_t slots = 1;
    for (const auto& c : cases) slots = std::max(slots, c.size());
    LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, BackendFromFlags(flags, *m, device, static_cast<int>(slots)));
    return BenchSelfSpeculative(flags, *m, *backend, id, cases, static_cast<int>(decode_tokens));
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, BackendFromFlags(flags, *m, device, static_cast<int>(batch)));
  for (int64_t i = 0; i < warmup; ++i) LS_RETURN_IF_ERROR(MeasureDecode(*backend, prompts, 2, ar).status());
  LS_ASSIGN_OR_RETURN(BenchRun base, MeasureDecode(*backend, prompts, static_cast<int>(decode_tokens), ar));
  {
    const double bw = std::max(bw_before, MeasureReadBandwidth(m->pool.get()));
    const double bytes = static_cast<double>(DecodeBytes(*m->weights));
    const double achieved = bytes * base.decode_tps / batch;
    std::printf("prefill: %.1f tokens/s (%lld-token prompt%s)\n", base.prefill_tps, static_cast<long long>(prompt_tokens),
                batch > 1 ? "s" : "");
    std::printf("decode: %.2f tokens/s (%lld tokens per sequence)\n", base.decode_tps, static_cast<long long>(decode_tokens));
    std::printf("weights read per decode step: %.1f MiB; achieved %.2f GB/s of measured %.2f GB/s read bandwidth = %.1f%%\n",
                bytes / 1048576.0, achieved / 1e9, bw / 1e9, 100.0 * achieved / bw);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("--mode: unknown bench mode '", mode, "'"));
}

}  // namespace

int RunBench(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2,
                            {"model", "random", "mode", "prompt-tokens", "decode-tokens", "batch", "exit-layers",
                             "speculations", "max-speculations", "repeats", "warmup", "prompts-file", "draft-vocab",
                             "draft-vocab-corpus", "calibration", "calibration-budget", "zero-layers-from", "dtype", "weights",
                             "threads", "max-context", "kv-cache-positions", "gpu-memory-fraction", "device"},
                            {"auto", "no-static", "no-mmap"});
  if (!flags.ok()) return Fail("bench", flags.status());
  absl::Status s = Bench(*flags);
  return s.ok() ? 0 : Fail("bench", s);
}

}  // namespace layerskip::cli
