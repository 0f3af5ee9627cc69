#include "engine/decode/speculative_phases.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/decode/autoregressive_step.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

// Probability of the argmax under softmax(logits): the greedy draft's confidence.
float MaxProb(const float* logits, int64_t V) {
  const float m = logits[cpu::Argmax(logits, V)];
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i] - m));
  return static_cast<float>(1.0 / sum);
}

// Where one exit row of a state lives: row `row` of drafting pass `pass`.
struct RowRef {
  int pass, row;
};

}  // namespace

absl::Status DraftAll(Backend& backend, std::vector<DraftState>& drafts, int E, const SpeculationConfig& cfg,
                      std::unique_ptr<Activations>* exit_rows) {
  const int V = backend.vocab_size();
  std::vector<std::unique_ptr<Activations>> passes;
  std::vector<std::vector<RowRef>> refs(drafts.size());
  for (;;) {
    TokenBatch batch;
    std::vector<int> ids;
    std::vector<size_t> fed;
    for (size_t j = 0; j < drafts.size(); ++j) {
      DraftState& d = drafts[j];
      if (d.input.empty()) continue;
      const int first = backend.length(0, d.slot);
      for (size_t i = 0; i < d.input.size(); ++i) {
        batch.AddToken(d.slot, first + static_cast<int>(i), d.prompt_tokens);
        ids.push_back(d.input[i]);
      }
      fed.push_back(j);
    }
    if (fed.empty()) break;
    const int pass = static_cast<int>(passes.size());
    // Every row is kept for verification; the heads run on the last row of states still drafting, by
    // argmax on the device (greedy, fixed d) or by logits on the host (sampling, adaptive confidence).
    std::vector<DraftState*> argmax_states, logit_states;
    std::vector<int> argmax_rows, logit_rows;
    int row = 0;
    for (size_t j : fed) {
      DraftState& d = drafts[j];
      const int n = static_cast<int>(d.input.size());
      for (int i = 0; i < n; ++i) refs[j].push_back({pass, row + i});
      d.rows += n;
      row += n;
      d.input.clear();
      if (d.drafting && static_cast<int>(d.tokens.size()) < d.max_drafts) {
        const bool on_device = d.sampling.greedy() && !cfg.adaptive;
        (on_device ? argmax_states : logit_states).push_back(&d);
        (on_device ? argmax_rows : logit_rows).push_back(row - 1);
      }
    }
    // Embed, [0, E) and the greedy drafts' argmax in one call (the backend's decode fast path).
    std::unique_ptr<Activations> x;
    std::vector<int> argmax(argmax_rows.size());
    LS_RETURN_IF_ERROR(backend.DecodeArgmax(E, batch, ids, /*draft=*/true, argmax_rows, argmax.data(), &x));
    passes.push_back(std::move(x));
    const Activations& h = *passes.back();
    std::vector<float> logits(logit_rows.size() * static_cast<size_t>(V));
    if (!logit_rows.empty()) LS_RETURN_IF_ERROR(backend.DraftHead(h, logit_rows, logits.data()));
    auto take = [&](DraftState& d, int token) {
      d.tokens.push_back(token);
      d.input.assign(1, token);
      if (std::find(d.eos_ids.begin(), d.eos_ids.end(), token) != d.eos_ids.end()) d.drafting = false;
    };
    for (size_t j = 0; j < argmax_states.size(); ++j) take(*argmax_states[j], argmax[j]);
    for (size_t j = 0; j < logit_states.size(); ++j) {
      DraftState& d = *logit_states[j];
      const float* l = logits.data() + j * V;
      int token;
      float confidence;
      if (d.sampling.greedy()) {
        token = cpu::Argmax(l, V);
        confidence = cfg.adaptive ? MaxProb(l, V) : 1.0f;
      } else {
        std::vector<float> q(V);
        cpu::SamplingProbs(l, V, d.sampling, q.data());
        token = cpu::SampleFromProbs(q.data(), V, d.uniform());
        confidence = q[token];
        d.q.push_back(std::move(q));
      }
      if (cfg.adaptive && confidence < cfg.confidence_threshold) {
        if (!d.q.empty() && d.q.size() > d.tokens.size()) d.q.pop_back();
        d.drafting = false;  // discard the unlikely draft; verify what we have
        continue;
      }
      take(d, token);
    }
  }
  // Gather every state's rows, state after state, copying runs of consecutive rows of a pass at once.
  int total = 0;
  for (const auto& r : refs) total += static_cast<int>(r.size());
  LS_ASSIGN_OR_RETURN(*exit_rows, backend.NewActivations(total));
  int dst = 0;
  for (const auto& r : refs) {
    for (size_t i = 0; i < r.size();) {
      size_t n = 1;
      while (i + n < r.size() && r[i + n].pass == r[i].pass && r[i + n].row == r[i].row + static_cast<int>(n)) ++n;
      LS_RETURN_IF_ERROR(backend.CopyRows(*passes[r[i].pass], r[i].row, static_cast<int>(n), **exit_rows, dst));
      dst += static_cast<int>(n);
      i += n;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifyLayout> LayoutVerification(const std::vector<VerifySpan>& spans) {
  VerifyLayout layout;
  int row = 0;
  for (const VerifySpan& s : spans) {
    if (s.drafts < 0 || s.rows < s.drafts + 1)
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": ", s.rows, " rows for ", s.drafts, " drafts"));
    for (int i = 0; i < s.rows; ++i) layout.batch.AddToken(s.slot, s.cached + i, s.prompt_tokens);
    layout.head_first.push_back(static_cast<int>(layout.head_rows.size()));
    for (int i = s.rows - s.drafts - 1; i < s.rows; ++i) layout.head_rows.push_back(row + i);
    row += s.rows;
  }
  return layout;
}

absl::StatusOr<VerifierHeads> RunVerifierHeads(Backend& backend, const Activations& x, const VerifyLayout& layout,
                                               const std::vector<bool>& want_targets,
                                               const std::vector<bool>& want_logits) {
  const size_t spans = layout.head_first.size();
  const int V = backend.vocab_size();
  auto span_rows = [&](size_t j) {
    const int begin = layout.head_first[j];
    const int end = j + 1 < spans ? layout.head_first[j + 1] : static_cast<int>(layout.head_rows.size());
    return std::make_pair(begin, end);
  };
  std::vector<int> argmax_rows, logit_rows;
  for (size_t j = 0; j < spans; ++j) {
    const auto [begin, end] = span_rows(j);
    for (int i = begin; i < end; ++i) {
      if (want_targets[j]) argmax_rows.push_back(layout.head_rows[i]);
      if (want_logits[j]) logit_rows.push_back(layout.head_rows[i]);
    }
  }
  std::vector<int> ids(argmax_rows.size());
  std::vector<float> logits(logit_rows.size() * static_cast<size_t>(V));
  if (!argmax_rows.empty()) LS_RETURN_IF_ERROR(backend.ExitArgmax(x, argmax_rows, ids.data()));
  if (!logit_rows.empty()) LS_RETURN_IF_ERROR(backend.ExitHead(x, logit_rows, logits.data()));
  VerifierHeads out;
  out.targets.resize(spans);
  out.logits.resize(spans);
  size_t a = 0, l = 0;
  for (size_t j = 0; j < spans; ++j) {
    const auto [begin, end] = span_rows(j);
    const size_t n = end - begin;
    if (want_targets[j]) {
      out.targets[j].assign(ids.begin() + a, ids.begin() + a + n);
      a += n;
    }
    if (want_logits[j]) {
      out.logits[j].assign(logits.begin() + l * V, logits.begin() + (l + n) * V);
      l += n;
    }
  }
  return out;
}

int AcceptDrafts(Sequence& s, const std::vector<int>& tokens, const std::vector<std::vector<float>>& q,
                 const VerifierRows& verifier, int64_t V, int context) {
  const int k = static_cast<int>(tokens.size());
  const bool greedy = s.params().sampling.greedy();
  const bool have_targets = greedy && static_cast<int>(verifier.targets.size()) == k + 1;
  auto target = [&](int i) {
    return have_targets ? verifier.targets[i] : cpu::Argmax(verifier.logits + static_cast<int64_t>(i) * V, V);
  };
  std::vector<float> p(greedy ? 0 : V);
  int accepted = 0;
  bool open = true;  // the sequence can take more tokens
  for (int i = 0; i < k && open; ++i) {
    const int t = tokens[i];
    if (greedy) {
      const int want = target(i);
      if (want != t) {
        s.Append(want, context);
        open = false;
        break;
      }
    } else {
      const float* li = verifier.logits + static_cast<int64_t>(i) * V;
      cpu::SamplingProbs(li, V, s.params().sampling, p.data());
      const float qt = q[i][t];
      if (!(s.rng().Uniform() < std::min(1.0, static_cast<double>(p[t]) / qt))) {
        // Rejected: draw from normalize(max(p - q, 0)), or from p if that is empty.
        double residual = 0.0;
        for (int64_t v = 0; v < V; ++v) {
          p[v] = std::max(0.0f, p[v] - q[i][v]);
          residual += p[v];
        }
        if (residual <= 0.0) cpu::SamplingProbs(li, V, s.params().sampling, p.data());
        s.Append(cpu::SampleFromProbs(p.data(), V, s.rng().Uniform()), context);
        open = false;
        break;
      }
    }
    ++accepted;
    open = s.Append(t, context);
  }
  if (open) {  // the bonus token
    if (greedy) s.Append(target(k), context);
    else s.Append(ChooseToken(verifier.logits + static_cast<int64_t>(k) * V, V, s), context);
  }
  for (int i = 0; i < k; ++i) s.stats().Count(i, i < accepted);
  return accepted;
}

int FinishRound(Sequence& s, const std::vector<int>& tokens, const std::vector<std::vector<float>>& q,
                const VerifierRows& verifier, int64_t V, int context, const SpeculationConfig& cfg) {
  s.MarkPendingCached();
  const int accepted = AcceptDrafts(s, tokens, q, verifier, V, context);
  UpdateDraftLimit(s, cfg, static_cast<int>(tokens.size()), accepted);
  ++s.stats().rounds;
  return accepted;
}

int MaxDrafts(Sequence& s, const SpeculationConfig& cfg, int context) {
  if (s.draft_limit <= 0) s.draft_limit = cfg.adaptive ? std::max(1, cfg.speculations) : cfg.speculations;
  const int limit = cfg.adaptive ? s.draft_limit : cfg.speculations;
  return std::max(0, std::min({limit, s.remaining() - 1, context - s.num_tokens() - 1}));
}

void UpdateDraftLimit(Sequence& s, const SpeculationConfig& cfg, int k, int accepted) {
  if (!cfg.adaptive) return;
  if (accepted == k && k == s.draft_limit) s.draft_limit = std::min(cfg.max_speculations, s.draft_limit + 1);
  else if (accepted < k) s.draft_limit = std::max(1, accepted + 1);
}

int CountAgreeing(const std::vector<int>& tokens, const std::vector<int>& targets) {
  int n = 0;
  while (n < static_cast<int>(tokens.size()) && n < static_cast<int>(targets.size()) && tokens[n] == targets[n]) ++n;
  return n;
}

}  // namespace layerskip
