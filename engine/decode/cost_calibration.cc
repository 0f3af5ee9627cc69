#include "engine/decode/cost_calibration.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/rng.h"
#include "engine/util/status.h"
#include "kernels/sampling.h"

namespace layerskip {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Times one call of f (an absl::Status-returning callable).
template <class F>
absl::StatusOr<double> TimeOnce(F f) {
  const double t0 = Now();
  LS_RETURN_IF_ERROR(f());
  return Now() - t0;
}

// Measures f(n) at a few row counts n in [1, R] (all of them when one call is cheap, else 1, 2, 4, 8, 16),
// interpolates linearly in between, and makes the result non-decreasing in n (more rows never cost less).
// The row counts are measured round-robin, several rounds, keeping each one's median: round-robin keeps a
// bad moment from skewing one row count only, and the median (not the minimum) keeps what is systematic on a
// loaded machine, such as waking a descheduled worker thread for every multi-row product, which decoding
// pays too. `share`: the budget.
template <class F>
absl::StatusOr<std::vector<double>> MeasureRows(F f, double share) {
  const int R = CostModel::kMaxRows;
  LS_ASSIGN_OR_RETURN(double t1, TimeOnce([&] { return f(1); }));  // warm-up
  LS_ASSIGN_OR_RETURN(t1, TimeOnce([&] { return f(1); }));
  std::vector<int> points;
  if (t1 * R * 3 * 2 <= share) {
    for (int n = 1; n <= R; ++n) points.push_back(n);
  } else {
    points = {1, 2, 4, 8, 16};
  }
  // A pass of n rows costs at most about n single-row passes; budget for twice the one-row time per point.
  const int rounds = std::clamp(static_cast<int>(share / (points.size() * std::max(t1, 1e-7) * 2)), 1, 25);
  std::vector<std::vector<double>> times(R + 1);
  for (int r = 0; r < rounds; ++r)
    for (int n : points) {
      LS_ASSIGN_OR_RETURN(double t, TimeOnce([&] { return f(n); }));
      times[n].push_back(t);
    }
  std::vector<double> at(R + 1, 0.0);
  for (int n : points) {
    std::sort(times[n].begin(), times[n].end());
    at[n] = times[n][times[n].size() / 2];
  }
  std::vector<double> out(R);
  for (size_t i = 0; i + 1 < points.size(); ++i) {
    const int a = points[i], b = points[i + 1];
    for (int n = a; n <= b; ++n) out[n - 1] = at[a] + (at[b] - at[a]) * (n - a) / (b - a);
  }
  for (int n = 1; n < R; ++n) out[n] = std::max(out[n], out[n - 1]);
  return out;
}

}  // namespace

absl::StatusOr<CostModel> CalibrateCostModel(Backend& backend, const CalibrationOptions& o) {
  const int L = backend.num_layers(), V = backend.vocab_size(), R = CostModel::kMaxRows;
  if (backend.first_layer() != 0 || backend.end_layer() != L || !backend.has_embedding() || !backend.has_head())
    return absl::FailedPreconditionError("calibration needs the whole model (every layer, the embedding and the head)");
  if (o.probe_tokens.size() < 2) return absl::InvalidArgumentError("calibration needs a probe text of >= 2 tokens");
  for (int id : o.probe_tokens)
    if (id < 0 || id >= V) return absl::InvalidArgumentError(absl::StrCat("calibration probe id ", id, " is outside the vocabulary"));
  if (backend.length(0, 0) != 0) return absl::FailedPreconditionError("calibration needs slot 0 of the KV cache free");
  const int max_probe = 64;
  const int ctx = std::min(32, backend.max_positions() / 4);
  if (backend.context_length() < ctx + R + 1) return absl::FailedPreconditionError("the model's context is too short to calibrate");
  auto ids = [&](int n, int first) {
    std::vector<int> v(n);
    for (int i = 0; i < n; ++i) v[i] = o.probe_tokens[(first + i) % o.probe_tokens.size()];
    return v;
  };
  // Timed rows stand for decode and verification rows (kGenerated); the context before them and the
  // acceptance probe are prompts (kPrompt), as decoding would compute them.
  auto batch_at = [](int n, int first, TokenRole role = TokenRole::kGenerated) {
    TokenBatch b;
    for (int i = 0; i < n; ++i) b.Add(0, first + i, role);
    return b;
  };
  auto rows = [](int n) {
    std::vector<int> r(n);
    for (int i = 0; i < n; ++i) r[i] = i;
    return r;
  };
  struct FreeSlot {  // slot 0 is free again however calibration ends
    Backend& b;
    ~FreeSlot() { b.Reset(0); }
  } free_slot{backend};
  // A context of `ctx` cached positions, as decoding has; `hidden`: R rows of final hidden states.
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> x, backend.NewActivations(std::max(ctx, R)));
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> prefix, backend.NewActivations(ctx));
  LS_RETURN_IF_ERROR(backend.Embed(ids(ctx, 0), *prefix));
  LS_RETURN_IF_ERROR(backend.Forward(0, L, batch_at(ctx, 0, TokenRole::kPrompt), *prefix));
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> hidden, backend.NewActivations(R));
  for (int i = 0; i < R; ++i) LS_RETURN_IF_ERROR(backend.CopyRows(*prefix, i % ctx, 1, *hidden, i));
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> x0, backend.NewActivations(R));
  LS_RETURN_IF_ERROR(backend.Embed(ids(R, ctx), *x0));
  std::vector<int> out(std::max(R, max_probe));

  CostModel c;
  c.num_layers = L;
  c.source = backend.device().is_cpu() ? "measured" : absl::StrCat("measured on ", backend.device().ToString());
  const double budget = std::max(0.05, o.budget_seconds);
  // One pass over every layer (so large models read their weights from memory, as decoding does), per layer.
  auto layers = [&](int n) -> absl::Status {
    LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> y, backend.NewActivations(n));
    LS_RETURN_IF_ERROR(backend.CopyRows(*x0, 0, n, *y, 0));
    absl::Status s = backend.Forward(0, L, batch_at(n, ctx), *y);
    backend.Truncate(0, ctx);
    LS_RETURN_IF_ERROR(s);
    return backend.Synchronize();
  };
  LS_ASSIGN_OR_RETURN(c.layer_seconds, MeasureRows(layers, 0.4 * budget));
  for (double& t : c.layer_seconds) t /= L;
  LS_ASSIGN_OR_RETURN(c.head_seconds, MeasureRows([&](int n) { return backend.ExitArgmax(*hidden, rows(n), out.data()); },
                                                  0.15 * budget));
  if (backend.draft_vocab_size() < V) {
    LS_ASSIGN_OR_RETURN(c.draft_head_seconds,
                        MeasureRows([&](int n) { return backend.DraftArgmax(*hidden, rows(n), out.data()); }, 0.1 * budget));
  } else {
    c.draft_head_seconds = c.head_seconds;
  }

  // Acceptance prior: T probe tokens through the layers one at a time; the draft head after each layer
  // against the full model's greedy token at the end. T shrinks so that this stays within the budget.
  int T = std::min<int>(max_probe, o.probe_tokens.size());
  auto cost = [&](int t) { return L * c.Layer(t) + (L - 1) * c.DraftHead(t) + c.Head(t); };
  while (T > 8 && cost(T) > 0.35 * budget) T = std::max(8, T / 2);
  T = std::min(T, backend.context_length());
  backend.Reset(0);
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Activations> h, backend.NewActivations(T));
  LS_RETURN_IF_ERROR(backend.Embed(ids(T, 0), *h));
  std::vector<std::vector<int>> guess(L + 1, std::vector<int>(T));
  const TokenBatch all = batch_at(T, 0, TokenRole::kPrompt);
  for (int l = 0; l < L; ++l) {
    LS_RETURN_IF_ERROR(backend.Forward(l, l + 1, all, *h));
    if (l + 1 < L) LS_RETURN_IF_ERROR(backend.DraftArgmax(*h, rows(T), guess[l + 1].data()));
    else LS_RETURN_IF_ERROR(backend.ExitArgmax(*h, rows(T), guess[l + 1].data()));
  }
  c.prior_acceptance.assign(L + 1, 0.0);
  for (int e = 1; e < L; ++e) {
    int agree = 0;
    for (int i = 0; i < T; ++i) agree += guess[e][i] == guess[L][i];
    c.prior_acceptance[e] = static_cast<double>(agree) / T;
  }
  c.prior_acceptance[L] = 1.0;
  return c;
}

absl::StatusOr<CostModel> CalibrateCostModel(Model& model, const CalibrationOptions& o) {
  const int capacity = std::min(model.max_positions(), std::min(32, model.max_positions() / 4) + 64 + 1);
  CpuBackend backend(&model, 1, capacity);
  return CalibrateCostModel(backend, o);
}

CostModel DefaultCostModel(int num_layers, double layer_bytes, double head_bytes, double draft_head_bytes) {
  const int L = num_layers;
  const double bandwidth = 20e9;
  CostModel c;
  c.num_layers = L;
  c.source = "default";
  for (int n = 1; n <= CostModel::kMaxRows; ++n) {
    const double rows = 1.0 + 0.1 * (n - 1);
    c.layer_seconds.push_back(std::max(1.0, layer_bytes) / bandwidth * rows);
    c.head_seconds.push_back(std::max(1.0, head_bytes) / bandwidth * rows);
    c.draft_head_seconds.push_back(std::max(1.0, draft_head_bytes) / bandwidth * rows);
  }
  c.prior_acceptance.assign(L + 1, 0.0);
  for (int e = 1; e <= L; ++e) c.prior_acceptance[e] = static_cast<double>(e) / L;
  return c;
}

CostModel DefaultCostModel(const Model& model) {
  const ModelWeights& w = model.weights();
  double layer_bytes = 0;
  if (!w.layers.empty()) {
    const LayerWeights& l = w.layers.front();
    for (const auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) layer_bytes += (*m)->bytes();
  }
  const double head_bytes = w.lm_head ? static_cast<double>(w.lm_head->bytes()) : layer_bytes;
  const double draft_bytes = head_bytes * model.draft_vocab_size() / std::max(1, model.vocab_size());
  return DefaultCostModel(model.num_layers(), layer_bytes, head_bytes, draft_bytes);
}

std::vector<int> DefaultProbeTokens(const Tokenizer* tokenizer, int vocab_size) {
  static const char kText[] =
      "import os\n\n\ndef read_lines(path):\n    \"\"\"Return the lines of a text file.\"\"\"\n"
      "    with open(path) as f:\n        return [line.rstrip() for line in f]\n\n\n"
      "class Counter:\n    def __init__(self):\n        self.counts = {}\n\n    def add(self, key):\n"
      "        self.counts[key] = self.counts.get(key, 0) + 1\n        return self.counts[key]\n";
  std::vector<int> ids;
  if (tokenizer) ids = tokenizer->Encode(kText, /*add_special_tokens=*/true);
  for (int& id : ids)
    if (id < 0 || id >= vocab_size) id = 0;
  if (ids.size() < 2) {
    Rng rng(7);
    ids.clear();
    for (int i = 0; i < 64; ++i) ids.push_back(static_cast<int>(rng.Next() % vocab_size));
  }
  return ids;
}

}  // namespace layerskip
