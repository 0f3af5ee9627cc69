#include "engine/decode/speculative_phases.h"

#include <algorithm>
#include <cmath>

#include "engine/decode/step.h"
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

}  // namespace

absl::Status DraftAll(const Model& model, KvCache& cache, std::vector<DraftState>& drafts,
                      const SpeculationConfig& cfg) {
  const int D = model.hidden_size(), V = model.vocab_size(), E = cfg.exit_layer;
  for (;;) {
    TokenBatch batch;
    std::vector<int> ids;
    std::vector<DraftState*> fed;
    for (DraftState& d : drafts) {
      if (d.input.empty()) continue;
      const int first = cache.length(0, d.slot);
      for (size_t i = 0; i < d.input.size(); ++i) {
        batch.Add(d.slot, first + static_cast<int>(i));
        ids.push_back(d.input[i]);
      }
      fed.push_back(&d);
    }
    if (fed.empty()) return absl::OkStatus();
    std::vector<float> x(ids.size() * D);
    LS_RETURN_IF_ERROR(model.Embed(ids, x.data()));
    LS_RETURN_IF_ERROR(model.Forward(0, E, batch, x.data(), &cache));
    // Keep every row for verification; the heads run on the last row of states still drafting.
    std::vector<DraftState*> heads;
    std::vector<float> h;
    size_t row = 0;
    for (DraftState* d : fed) {
      const size_t n = d->input.size();
      d->exit_rows.insert(d->exit_rows.end(), x.begin() + row * D, x.begin() + (row + n) * D);
      row += n;
      d->input.clear();
      if (d->drafting && static_cast<int>(d->tokens.size()) < d->max_drafts) {
        heads.push_back(d);
        h.insert(h.end(), d->exit_rows.end() - D, d->exit_rows.end());
      }
    }
    if (heads.empty()) continue;
    std::vector<float> logits(heads.size() * static_cast<size_t>(V));
    LS_RETURN_IF_ERROR(model.DraftHead(h.data(), static_cast<int>(heads.size()), logits.data()));
    for (size_t j = 0; j < heads.size(); ++j) {
      DraftState& d = *heads[j];
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
      d.tokens.push_back(token);
      d.input.assign(1, token);
      if (std::find(d.eos_ids.begin(), d.eos_ids.end(), token) != d.eos_ids.end()) d.drafting = false;
    }
  }
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
