// layerskip bench --mode self-speculative: every (E, d) (and, with --auto, the automatic mode) against
// autoregressive decoding in paired, interleaved runs on the same prompts; the median of the paired ratios
// with their spread, next to the cost model's prediction; the machine's load average before and after.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/bench.h"
#include "cli/commands.h"
#include "engine/util/status.h"

namespace layerskip::cli {
namespace {

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return "unknown";
  return absl::StrCat(a, " ", b, " ", c);
}

struct Ratios {
  std::vector<double> r;
  void Add(double x) { r.push_back(x); }
  double Quantile(double q) const {
    std::vector<double> s = r;
    std::sort(s.begin(), s.end());
    if (s.empty()) return 0;
    const double pos = q * (s.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(s.size() - 1, lo + 1);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  }
  double Median() const { return Quantile(0.5); }
  std::string Spread() const { return absl::StrFormat("%.2f-%.2f", Quantile(0), Quantile(1)); }
};

void AddStats(SpecStats& into, const SpecStats& s) {
  into.rounds += s.rounds;
  into.drafted += s.drafted;
  into.accepted += s.accepted;
  for (const auto& [choice, steps] : s.steps_by_choice) into.steps_by_choice[choice] += steps;
  into.predicted_speedup = s.predicted_speedup;
}

struct Config {
  std::string name;  // "E=4 d=2" or "auto"
  int e = 0, d = 0;
  DecodeOptions options;
  std::vector<Ratios> per_case;
  Ratios all;
  SpecStats spec;
};

}  // namespace

absl::StatusOr<BenchRun> MeasureDecode(Backend& backend, const std::vector<std::vector<int>>& prompts,
                                       int decode_tokens, const DecodeOptions& decode) {
  std::vector<GenerationParams> params(prompts.size());
  for (auto& p : params) p.max_tokens = decode_tokens;  // no eos: every run decodes the same count
  LS_ASSIGN_OR_RETURN(auto results, GenerateBatch(backend, prompts, params, decode));
  BenchRun run;
  double prefill = 0, dec = 0;
  size_t prompt_tokens = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    prompt_tokens += prompts[i].size();
    run.generated += results[i].ids.size();
    prefill = results[i].prefill_seconds;
    dec = results[i].decode_seconds;
    AddStats(run.spec, results[i].spec);
    run.ids.push_back(results[i].ids);
  }
  run.prefill_tps = prompt_tokens / prefill;
  run.decode_tps = (run.generated - results.size()) / dec;
  run.acceptance = run.spec.acceptance_rate();
  run.tokens_per_round = run.spec.tokens_per_round();
  return run;
}

absl::Status BenchSelfSpeculative(const Flags& flags, LoadedModel& m, Backend& backend, const std::string& model_id,
                                  const std::vector<std::vector<std::vector<int>>>& cases, int decode_tokens) {
  const int L = m.weights->config.num_hidden_layers;
  const std::string load_before = LoadAverage();
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
    for (int d : ds)
      if (d < 1 || d > 64) return absl::InvalidArgumentError("--speculations: each d must be in [1, 64]");
  }
  LS_ASSIGN_OR_RETURN(int64_t repeats, flags.GetInt("repeats", 5));
  if (repeats < 1 || repeats > 100) return absl::InvalidArgumentError("--repeats must be in [1, 100]");
  const bool with_auto = flags.Has("auto"), with_static = !flags.Has("no-static");
  if (!with_auto && !with_static) return absl::InvalidArgumentError("--no-static needs --auto");
  const DecodeOptions ar;

  // The draft vocabulary's corpus, when no file is given: the model's own greedy continuations of the
  // bench prompts (a random model has no other text it predicts; said so in the output).
  std::vector<int> corpus;
  if (flags.Has("draft-vocab") && !flags.Has("draft-vocab-corpus")) {
    for (const auto& prompts : cases) {
      LS_ASSIGN_OR_RETURN(BenchRun r, MeasureDecode(backend, prompts, decode_tokens, ar));
      for (const auto& ids : r.ids) corpus.insert(corpus.end(), ids.begin(), ids.end());
    }
  }
  LS_RETURN_IF_ERROR(ApplyDraftVocabulary(flags, m, corpus));
  LS_RETURN_IF_ERROR(backend.SetDraftVocabulary(m.model->draft_vocabulary()));  // a GPU backend keeps its own copy
  DecodeOptions automatic;
  automatic.mode = DecodeMode::kSelfSpeculative;
  automatic.auto_exit_layer = automatic.auto_speculations = true;
  LS_ASSIGN_OR_RETURN(int64_t max_d, flags.GetInt("max-speculations", 8));
  if (max_d < 1 || max_d > 64) return absl::InvalidArgumentError("--max-speculations must be in [1, 64]");
  automatic.policy.max_speculations = static_cast<int>(max_d);
  LS_RETURN_IF_ERROR(AttachCostModel(flags, model_id, m, automatic, /*want_cost=*/true, backend.device()));
  const CostModel& cost = *automatic.cost;
  const int batch = static_cast<int>(cases.front().size());
  std::printf("load average before: %s; cost model: %s; draft head: %d of %d tokens%s\n", load_before.c_str(),
              cost.source.c_str(), m.model->draft_vocab_size(), m.weights->config.vocab_size,
              !corpus.empty() ? " (chosen from the model's own greedy output on these prompts)" : "");
  std::printf("cost model: layer pass %.1f us (1 row) / %.1f us (%d rows), head %.1f us, draft head %.1f us; "
              "predicted autoregressive %.1f tokens/s at batch %d\n",
              1e6 * cost.Layer(1), 1e6 * cost.Layer(CostModel::kMaxRows), CostModel::kMaxRows, 1e6 * cost.Head(1),
              1e6 * cost.DraftHead(1), batch / cost.AutoregressiveStep(batch), batch);

  std::vector<Config> configs;
  if (with_static)
    for (int e = e_lo; e <= e_hi; ++e)
      for (int d : ds) {
        Config c;
        c.name = absl::StrCat("E=", e, " d=", d);
        c.e = e, c.d = d;
        c.options.mode = DecodeMode::kSelfSpeculative;
        c.options.exit_layer = e;
        c.options.speculation.speculations = d;
        configs.push_back(std::move(c));
      }
  if (with_auto) {
    Config c;
    c.name = "auto";
    c.options = automatic;
    configs.push_back(std::move(c));
  }
  Ratios ar_tps;
  for (Config& c : configs) {
    c.per_case.resize(cases.size());
    for (size_t k = 0; k < cases.size(); ++k) {
      for (int64_t r = 0; r < repeats; ++r) {
        // Paired and interleaved: the order alternates so slow drift of the machine favours neither.
        BenchRun a, s;
        if (r % 2 == 0) {
          LS_ASSIGN_OR_RETURN(a, MeasureDecode(backend, cases[k], decode_tokens, ar));
          LS_ASSIGN_OR_RETURN(s, MeasureDecode(backend, cases[k], decode_tokens, c.options));
        } else {
          LS_ASSIGN_OR_RETURN(s, MeasureDecode(backend, cases[k], decode_tokens, c.options));
          LS_ASSIGN_OR_RETURN(a, MeasureDecode(backend, cases[k], decode_tokens, ar));
        }
        if (s.ids != a.ids) return absl::InternalError(absl::StrCat(c.name, ": greedy output differs from autoregressive"));
        c.per_case[k].Add(s.decode_tps / a.decode_tps);
        c.all.Add(s.decode_tps / a.decode_tps);
        ar_tps.Add(a.decode_tps);
        AddStats(c.spec, s.spec);
      }
    }
    std::fprintf(stderr, "%s: median %.2fx\n", c.name.c_str(), c.all.Median());
  }

  std::printf("autoregressive: median %.2f tokens/s over %zu runs (spread %.2f-%.2f)\n", ar_tps.Median(),
              ar_tps.r.size(), ar_tps.Quantile(0), ar_tps.Quantile(1));
  std::printf("%lld paired runs per configuration and prompt set; speedup = self-speculative / autoregressive "
              "tokens/s of the same pair\n\n",
              static_cast<long long>(repeats));
  std::printf("| E | d | speedup (median) | spread (min-max) | predicted | measured / predicted | acceptance | "
              "tokens/round |\n|---|---|---|---|---|---|---|---|\n");
  const Config* best = nullptr;
  for (const Config& c : configs) {
    if (c.options.automatic()) continue;
    // The prediction for the acceptance this configuration met: tokens per round x AR step / round.
    const double predicted =
        c.spec.tokens_per_round() * cost.AutoregressiveStep(batch) / cost.Round(c.e, c.d, batch);
    std::printf("| %d | %d | %.2fx | %s | %.2fx | %.0f%% | %.1f%% | %.2f |\n", c.e, c.d, c.all.Median(),
                c.all.Spread().c_str(), predicted, 100 * c.all.Median() / predicted, 100 * c.spec.acceptance_rate(),
                c.spec.tokens_per_round());
    if (!best || c.all.Median() > best->all.Median()) best = &c;
  }
  if (best) std::printf("\nbest static: %s, %.2fx (median; spread %s)\n", best->name.c_str(), best->all.Median(),
                        best->all.Spread().c_str());
  if (with_auto) {
    const Config& a = configs.back();
    std::string choices;
    for (const auto& [choice, steps] : a.spec.steps_by_choice)
      absl::StrAppend(&choices, choices.empty() ? "" : ", ",
                      choice.second ? absl::StrCat("E=", choice.first, " d=", choice.second) : std::string("AR"), ": ",
                      steps);
    std::printf("auto: %.2fx (median; spread %s); acceptance %.1f%%, %.2f tokens/round; steps per choice: %s\n",
                a.all.Median(), a.all.Spread().c_str(), 100 * a.spec.acceptance_rate(), a.spec.tokens_per_round(),
                choices.c_str());
    if (cases.size() > 1) {
      std::printf("\n| prompt | auto speedup (median) | spread | best static | its speedup |\n|---|---|---|---|---|\n");
      for (size_t k = 0; k < cases.size(); ++k) {
        const Config* b = nullptr;
        for (const Config& c : configs)
          if (!c.options.automatic() && (!b || c.per_case[k].Median() > b->per_case[k].Median())) b = &c;
        std::printf("| %zu | %.2fx | %s | %s | %s |\n", k + 1, a.per_case[k].Median(), a.per_case[k].Spread().c_str(),
                    b ? b->name.c_str() : "-", b ? absl::StrFormat("%.2fx", b->per_case[k].Median()).c_str() : "-");
      }
    }
  }
  std::printf("\nload average after: %s\n", LoadAverage().c_str());
  return absl::OkStatus();
}

}  // namespace layerskip::cli
