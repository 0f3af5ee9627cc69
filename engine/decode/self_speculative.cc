#include "engine/decode/self_speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/decode/step.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per-sequence state of one round.
struct Draft {
  Sequence* seq = nullptr;
  int max_drafts = 0;            // k_max for this round
  std::vector<int> input;        // tokens to run through [0, E) in the next drafting pass
  std::vector<float> exit_rows;  // [rows, D]: hidden states entering layer E (pending tokens, then drafts)
  std::vector<int> tokens;       // the drafts
  std::vector<std::vector<float>> q;  // sampling only: the draft distribution of each draft [V]
  bool drafting = true;
};

// Probability of the argmax under softmax(logits): the greedy draft's confidence.
float MaxProb(const float* logits, int64_t V) {
  const float m = logits[cpu::Argmax(logits, V)];
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i] - m));
  return static_cast<float>(1.0 / sum);
}

// Drafting: passes over [0, E) until every sequence has its drafts and the last draft has run through.
absl::Status DraftAll(const Model& model, KvCache& cache, std::vector<Draft>& drafts, const SpeculationConfig& cfg) {
  const int D = model.hidden_size(), V = model.vocab_size(), E = cfg.exit_layer;
  for (;;) {
    TokenBatch batch;
    std::vector<int> ids;
    std::vector<Draft*> fed;
    for (Draft& d : drafts) {
      if (d.input.empty()) continue;
      const int first = cache.length(0, d.seq->slot());
      for (size_t i = 0; i < d.input.size(); ++i) {
        batch.Add(d.seq->slot(), first + static_cast<int>(i));
        ids.push_back(d.input[i]);
      }
      fed.push_back(&d);
    }
    if (fed.empty()) return absl::OkStatus();
    std::vector<float> x(ids.size() * D);
    LS_RETURN_IF_ERROR(model.Embed(ids, x.data()));
    LS_RETURN_IF_ERROR(model.Forward(0, E, batch, x.data(), &cache));
    // Keep every row for verification; the heads run on the last row of sequences still drafting.
    std::vector<Draft*> heads;
    std::vector<float> h;
    size_t row = 0;
    for (Draft* d : fed) {
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
    LS_RETURN_IF_ERROR(model.ExitHead(h.data(), static_cast<int>(heads.size()), logits.data()));
    for (size_t j = 0; j < heads.size(); ++j) {
      Draft& d = *heads[j];
      Sequence& s = *d.seq;
      const float* l = logits.data() + j * V;
      int token;
      float confidence;
      if (s.params().sampling.greedy()) {
        token = cpu::Argmax(l, V);
        confidence = cfg.adaptive ? MaxProb(l, V) : 1.0f;
      } else {
        std::vector<float> q(V);
        cpu::SamplingProbs(l, V, s.params().sampling, q.data());
        token = cpu::SampleFromProbs(q.data(), V, s.rng().Uniform());
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
      const auto& eos = s.params().eos_ids;
      if (std::find(eos.begin(), eos.end(), token) != eos.end()) d.drafting = false;
    }
  }
}

// Accepts drafts against the verifier's logits [k+1, V] and emits tokens into the sequence.
// Returns the number of accepted drafts.
int Accept(Draft& d, const float* logits, int64_t V, int context) {
  Sequence& s = *d.seq;
  const int k = static_cast<int>(d.tokens.size());
  const bool greedy = s.params().sampling.greedy();
  std::vector<float> p(greedy ? 0 : V);
  int accepted = 0;
  bool open = true;  // the sequence can take more tokens
  for (int i = 0; i < k && open; ++i) {
    const float* li = logits + static_cast<int64_t>(i) * V;
    const int t = d.tokens[i];
    if (greedy) {
      const int target = cpu::Argmax(li, V);
      if (target != t) {
        s.Append(target, context);
        open = false;
        break;
      }
    } else {
      cpu::SamplingProbs(li, V, s.params().sampling, p.data());
      const float qt = d.q[i][t];
      if (!(s.rng().Uniform() < std::min(1.0, static_cast<double>(p[t]) / qt))) {
        // Rejected: draw from normalize(max(p - q, 0)), or from p if that is empty.
        double residual = 0.0;
        for (int64_t v = 0; v < V; ++v) {
          p[v] = std::max(0.0f, p[v] - d.q[i][v]);
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
  if (open) s.Append(ChooseToken(logits + static_cast<int64_t>(k) * V, V, s), context);  // the bonus token
  for (int i = 0; i < k; ++i) s.stats().Count(i, i < accepted);
  return accepted;
}

}  // namespace

absl::Status ValidateSpeculation(const SpeculationConfig& cfg, int num_layers) {
  if (cfg.exit_layer < 1 || cfg.exit_layer >= num_layers)
    return absl::InvalidArgumentError(absl::StrCat("exit_layer ", cfg.exit_layer, " must be in [1, ", num_layers - 1,
                                                   "] for self-speculative decoding of a ", num_layers,
                                                   "-layer model"));
  if (cfg.speculations < 0 || cfg.speculations > 64)
    return absl::InvalidArgumentError(absl::StrCat("speculations ", cfg.speculations, " must be in [0, 64]"));
  if (cfg.adaptive && (cfg.max_speculations < 1 || cfg.max_speculations > 64))
    return absl::InvalidArgumentError("max_speculations must be in [1, 64]");
  return absl::OkStatus();
}

absl::Status SelfSpeculativeRound(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                                  const SpeculationConfig& cfg) {
  LS_RETURN_IF_ERROR(ValidateSpeculation(cfg, model.num_layers()));
  const int D = model.hidden_size(), V = model.vocab_size(), E = cfg.exit_layer, L = model.num_layers();
  const int context = ContextLength(model, cache);
  std::vector<Draft> drafts;
  for (Sequence* s : seqs) {
    if (s->finished()) continue;
    if (cache.length(0, s->slot()) != s->cached() || cache.length(E, s->slot()) != s->cached())
      return absl::FailedPreconditionError(absl::StrCat("slot ", s->slot(), ": KV cache lengths disagree with the sequence"));
    Draft d;
    d.seq = s;
    if (s->draft_limit <= 0) s->draft_limit = cfg.adaptive ? std::max(1, cfg.speculations) : cfg.speculations;
    const int limit = cfg.adaptive ? s->draft_limit : cfg.speculations;
    d.max_drafts = std::max(0, std::min({limit, s->remaining() - 1, context - s->num_tokens() - 1}));
    d.input = s->pending();
    drafts.push_back(std::move(d));
  }
  if (drafts.empty()) return absl::OkStatus();

  const double t0 = Now();
  LS_RETURN_IF_ERROR(DraftAll(model, cache, drafts, cfg));
  const double t1 = Now();

  // Verification: all rows of all sequences through [E, L) in one batch.
  TokenBatch batch;
  std::vector<float> x;
  for (Draft& d : drafts) {
    const int rows = static_cast<int>(d.exit_rows.size() / D);
    const int first = d.seq->cached();
    for (int i = 0; i < rows; ++i) batch.Add(d.seq->slot(), first + i);
    x.insert(x.end(), d.exit_rows.begin(), d.exit_rows.end());
  }
  LS_RETURN_IF_ERROR(model.Forward(E, L, batch, x.data(), &cache));
  // Head rows: the last pending token and each draft, i.e. the last k+1 rows of each sequence.
  std::vector<float> h;
  size_t row = 0;
  for (Draft& d : drafts) {
    const size_t rows = d.exit_rows.size() / D, k = d.tokens.size();
    h.insert(h.end(), x.begin() + (row + rows - k - 1) * D, x.begin() + (row + rows) * D);
    row += rows;
  }
  std::vector<float> logits(h.size() / D * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(model.ExitHead(h.data(), static_cast<int>(h.size() / D), logits.data()));

  size_t head_row = 0;
  for (Draft& d : drafts) {
    Sequence& s = *d.seq;
    const int k = static_cast<int>(d.tokens.size());
    s.MarkPendingCached();
    const int accepted = Accept(d, logits.data() + head_row * V, V, context);
    head_row += k + 1;
    // Roll back: every layer keeps the emitted tokens except the last, which is pending.
    cache.Truncate(s.slot(), s.num_tokens() - 1);
    if (cfg.adaptive) {
      if (accepted == k && k == s.draft_limit) s.draft_limit = std::min(cfg.max_speculations, s.draft_limit + 1);
      else if (accepted < k) s.draft_limit = std::max(1, accepted + 1);
    }
    SpecStats& st = s.stats();
    ++st.rounds;
    st.draft_seconds += t1 - t0;
    st.verify_seconds += Now() - t1;
  }
  return absl::OkStatus();
}

}  // namespace layerskip
