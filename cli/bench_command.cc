// layerskip bench: prefill and decode speed against the machine's measured read bandwidth, and the
// self-speculative sweep over (E, d) with speedups against autoregressive decoding from the same run.
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/bandwidth.h"
#include "cli/commands.h"
#include "engine/util/rng.h"
#include "engine/util/status.h"

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

struct Run {
  double prefill_tps = 0, decode_tps = 0, acceptance = 0, tokens_per_round = 0;
  size_t generated = 0;
};

absl::StatusOr<Run> Measure(const LoadedModel& m, const std::vector<std::vector<int>>& prompts, int decode_tokens,
                            const DecodeOptions& decode) {
  const LlamaConfig& c = m.weights->config;
  KvCache cache(c, 0, c.num_hidden_layers, static_cast<int>(prompts.size()), m.context);
  std::vector<GenerationParams> params(prompts.size());
  for (auto& p : params) p.max_tokens = decode_tokens;  // no eos: every run decodes the same count
  LS_ASSIGN_OR_RETURN(auto results, GenerateBatch(*m.model, cache, prompts, params, decode));
  Run run;
  double prefill = 0, dec = 0;
  int64_t drafted = 0, accepted = 0, rounds = 0;
  size_t prompt_tokens = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    prompt_tokens += prompts[i].size();
    run.generated += results[i].ids.size();
    prefill = results[i].prefill_seconds;
    dec = results[i].decode_seconds;
    drafted += results[i].spec.drafted;
    accepted += results[i].spec.accepted;
    rounds += results[i].spec.rounds;
  }
  run.prefill_tps = prompt_tokens / prefill;
  run.decode_tps = (run.generated - results.size()) / dec;
  run.acceptance = drafted ? static_cast<double>(accepted) / drafted : 0;
  run.tokens_per_round = rounds ? static_cast<double>(accepted + rounds) / rounds : 0;
  return run;
}

absl::Status Bench(const Flags& flags) {
  LS_ASSIGN_OR_RETURN(ModelLoadOptions load, LoadOptionsFromFlags(flags));
  LS_ASSIGN_OR_RETURN(int64_t prompt_tokens, flags.GetInt("prompt-tokens", 64));
  LS_ASSIGN_OR_RETURN(int64_t decode_tokens, flags.GetInt("decode-tokens", 32));
  LS_ASSIGN_OR_RETURN(int64_t batch, flags.GetInt("batch", 1));
  if (prompt_tokens < 1 || decode_tokens < 2 || batch < 1 || batch > 256)
    return absl::InvalidArgumentError("--prompt-tokens >= 1, --decode-tokens >= 2, --batch in [1, 256]");
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
    m = WrapWeights(std::make_shared<const ModelWeights>(RandomModelWeights(c, load.type, 1234)), load);
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
  std::printf("model: %s (%d layers, hidden %d, vocab %d, %s weights), threads %d, batch %lld\n", name.c_str(), L,
              c.hidden_size, c.vocab_size, WeightTypeName(m->weights->type), m->pool->num_threads(),
              static_cast<long long>(batch));
  DecodeOptions ar;
  // The machine's bandwidth is probed before and after decoding; the higher of the two counts, so a noisy
  // moment during one probe cannot flatter the fraction.
  const double bw_before = mode == "autoregressive" ? MeasureReadBandwidth(m->pool.get()) : 0.0;
  LS_ASSIGN_OR_RETURN(Run base, Measure(*m, prompts, static_cast<int>(decode_tokens), ar));
  if (mode == "autoregressive") {
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
  if (mode != "self-speculative") return absl::InvalidArgumentError(absl::StrCat("--mode: unknown bench mode '", mode, "'"));

  // Sweep E over --exit-layers A-B (default 1..L-1) and d over --speculations (default 1..8).
  int e_lo = 1, e_hi = L - 1;
  if (flags.Has("exit-layers")) {
    std::vector<std::string> parts = absl::StrSplit(flags.Get("exit-layers"), '-');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &e_lo) || !absl::SimpleAtoi(parts[1], &e_hi) || e_lo < 1 ||
        e_hi >= L || e_lo > e_hi)
      return absl::InvalidArgumentError(absl::StrCat("--exit-layers: expected A-B with 1 <= A <= B <= ", L - 1));
  }
  std::vector<int> ds = {1, 2, 3, 4, 5, 6, 7, 8};
  if (flags.Has("speculations")) {
    LS_ASSIGN_OR_RETURN(ds, ParseIntList(flags.Get("speculations"), "--speculations"));
  }
  // This machine is noisy: every configuration runs --repeats times, each run right after an
  // autoregressive run, and speedups compare best with best.
  LS_ASSIGN_OR_RETURN(int64_t repeats, flags.GetInt("repeats", 2));
  if (repeats < 1 || repeats > 100) return absl::InvalidArgumentError("--repeats must be in [1, 100]");
  struct Row {
    int e, d;
    Run best;
  };
  std::vector<Row> rows;
  double best_ar = base.decode_tps;
  for (int e = e_lo; e <= e_hi; ++e) {
    for (int d : ds) {
      DecodeOptions ss;
      ss.mode = DecodeMode::kSelfSpeculative;
      ss.exit_layer = e;
      ss.speculation.speculations = d;
      Row row{e, d, {}};
      for (int64_t r = 0; r < repeats; ++r) {
        LS_ASSIGN_OR_RETURN(Run ar_run, Measure(*m, prompts, static_cast<int>(decode_tokens), ar));
        best_ar = std::max(best_ar, ar_run.decode_tps);
        LS_ASSIGN_OR_RETURN(Run run, Measure(*m, prompts, static_cast<int>(decode_tokens), ss));
        if (run.decode_tps > row.best.decode_tps) row.best = run;
      }
      rows.push_back(row);
      std::fprintf(stderr, "E=%d d=%d: %.2f tokens/s\n", e, d, row.best.decode_tps);
    }
  }
  std::printf("autoregressive: %.2f tokens/s (best of %zu runs)\n\n"
              "| E | d | tokens/s | speedup | acceptance | tokens/round |\n|---|---|---|---|---|---|\n",
              best_ar, rows.size() * repeats + 1);
  double best = 0;
  int best_e = 0, best_d = 0;
  for (const Row& row : rows) {
    const double speedup = row.best.decode_tps / best_ar;
    std::printf("| %d | %d | %.2f | %.2fx | %.1f%% | %.2f |\n", row.e, row.d, row.best.decode_tps, speedup,
                100 * row.best.acceptance, row.best.tokens_per_round);
    if (speedup > best) best = speedup, best_e = row.e, best_d = row.d;
  }
  std::printf("\nbest: E=%d d=%d, %.2fx autoregressive\n", best_e, best_d, best);
  return absl::OkStatus();
}

}  // namespace

int RunBench(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2,
                            {"model", "random", "mode", "prompt-tokens", "decode-tokens", "batch", "exit-layers",
                             "speculations", "repeats", "dtype", "threads", "max-context"});
  if (!flags.ok()) return Fail("bench", flags.status());
  absl::Status s = Bench(*flags);
  return s.ok() ? 0 : Fail("bench", s);
}

}  // namespace layerskip::cli
