#include "engine/decode/self_speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/decode/speculative_phases.h"
#include "engine/decode/step.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
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
  std::vector<DraftState> drafts;
  std::vector<Sequence*> active;
  for (Sequence* s : seqs) {
    if (s->finished()) continue;
    if (cache.length(0, s->slot()) != s->cached() || cache.length(E, s->slot()) != s->cached())
      return absl::FailedPreconditionError(absl::StrCat("slot ", s->slot(), ": KV cache lengths disagree with the sequence"));
    DraftState d;
    d.slot = s->slot();
    d.max_drafts = MaxDrafts(*s, cfg, context);
    d.sampling = s->params().sampling;
    d.eos_ids = s->params().eos_ids;
    d.uniform = [s] { return s->rng().Uniform(); };
    d.input = s->pending();
    drafts.push_back(std::move(d));
    active.push_back(s);
  }
  if (drafts.empty()) return absl::OkStatus();

  const double t0 = Now();
  LS_RETURN_IF_ERROR(DraftAll(model, cache, drafts, cfg));
  const double t1 = Now();

  // Verification: all rows of all sequences through [E, L) in one batch.
  TokenBatch batch;
  std::vector<float> x;
  for (size_t j = 0; j < drafts.size(); ++j) {
    const DraftState& d = drafts[j];
    const int rows = d.rows(D);
    const int first = active[j]->cached();
    for (int i = 0; i < rows; ++i) batch.Add(d.slot, first + i);
    x.insert(x.end(), d.exit_rows.begin(), d.exit_rows.end());
  }
  LS_RETURN_IF_ERROR(model.Forward(E, L, batch, x.data(), &cache));
  // Head rows: the last pending token and each draft, i.e. the last k+1 rows of each sequence.
  std::vector<float> h;
  size_t row = 0;
  for (const DraftState& d : drafts) {
    const size_t rows = d.exit_rows.size() / D, k = d.tokens.size();
    h.insert(h.end(), x.begin() + (row + rows - k - 1) * D, x.begin() + (row + rows) * D);
    row += rows;
  }
  std::vector<float> logits(h.size() / D * static_cast<size_t>(V));
  LS_RETURN_IF_ERROR(model.ExitHead(h.data(), static_cast<int>(h.size() / D), logits.data()));

  size_t head_row = 0;
  for (size_t j = 0; j < drafts.size(); ++j) {
    const DraftState& d = drafts[j];
    Sequence& s = *active[j];
    const int k = static_cast<int>(d.tokens.size());
    s.MarkPendingCached();
    VerifierRows verifier;
    verifier.logits = logits.data() + head_row * V;
    const int accepted = AcceptDrafts(s, d.tokens, d.q, verifier, V, context);
    head_row += k + 1;
    // Roll back: every layer keeps the emitted tokens except the last, which is pending.
    cache.Truncate(s.slot(), s.num_tokens() - 1);
    UpdateDraftLimit(s, cfg, k, accepted);
    SpecStats& st = s.stats();
    ++st.rounds;
    st.draft_seconds += t1 - t0;
    st.verify_seconds += Now() - t1;
  }
  return absl::OkStatus();
}

}  // namespace layerskip
