#include "engine/decode/self_speculative.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/decode/speculative_phases.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

absl::Status ValidateSpeculation(const SpeculationConfig& cfg, int exit_layer, int num_layers) {
  if (exit_layer < 1 || exit_layer >= num_layers)
    return absl::InvalidArgumentError(absl::StrCat("exit_layer ", exit_layer, " must be in [1, ", num_layers - 1,
                                                   "] for self-speculative decoding of a ", num_layers,
                                                   "-layer model"));
  if (cfg.speculations < 0 || cfg.speculations > 64)
    return absl::InvalidArgumentError(absl::StrCat("speculations ", cfg.speculations, " must be in [0, 64]"));
  if (cfg.adaptive && (cfg.max_speculations < 1 || cfg.max_speculations > 64))
    return absl::InvalidArgumentError("max_speculations must be in [1, 64]");
  return absl::OkStatus();
}

absl::Status SelfSpeculativeRound(Backend& backend, const std::vector<Sequence*>& seqs, int E,
                                  const SpeculationConfig& cfg) {
  const int L = backend.num_layers();
  LS_RETURN_IF_ERROR(ValidateSpeculation(cfg, E, L));
  const int V = backend.vocab_size(), context = backend.context_length();
  std::vector<DraftState> drafts;
  std::vector<Sequence*> active;
  for (Sequence* s : seqs) {
    if (s->finished()) continue;
    if (backend.length(0, s->slot()) != s->cached() || backend.length(E, s->slot()) != s->cached())
      return absl::FailedPreconditionError(absl::StrCat("slot ", s->slot(), ": KV cache lengths disagree with the sequence"));
    DraftState d;
    d.slot = s->slot();
    d.prompt_tokens = static_cast<int>(s->prompt().size());
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
  std::unique_ptr<Activations> x;
  LS_RETURN_IF_ERROR(DraftAll(backend, drafts, E, cfg, &x));
  const double t1 = Now();

  // Verification: all rows of all sequences through [E, L) in one batch, then the exit head on each
  // sequence's last drafts + 1 rows (greedy: argmax on the device; sampling: logits).
  std::vector<VerifySpan> spans;
  std::vector<bool> greedy;
  for (size_t j = 0; j < drafts.size(); ++j) {
    spans.push_back({drafts[j].slot, active[j]->cached(), drafts[j].rows, static_cast<int>(drafts[j].tokens.size()),
                     drafts[j].prompt_tokens});
    greedy.push_back(drafts[j].sampling.greedy());
  }
  LS_ASSIGN_OR_RETURN(VerifyLayout layout, LayoutVerification(spans));
  LS_RETURN_IF_ERROR(backend.Forward(E, L, layout.batch, *x));
  std::vector<bool> sampling(greedy.size());
  for (size_t j = 0; j < greedy.size(); ++j) sampling[j] = !greedy[j];
  LS_ASSIGN_OR_RETURN(VerifierHeads heads, RunVerifierHeads(backend, *x, layout, greedy, sampling));

  for (size_t j = 0; j < drafts.size(); ++j) {
    Sequence& s = *active[j];
    VerifierRows verifier;
    verifier.targets = std::move(heads.targets[j]);
    verifier.logits = heads.logits[j].empty() ? nullptr : heads.logits[j].data();
    FinishRound(s, drafts[j].tokens, drafts[j].q, verifier, V, context, cfg);
    backend.Truncate(s.slot(), AcceptedLength(s));  // roll back the rejected drafts in every layer
    SpecStats& st = s.stats();
    st.draft_seconds += t1 - t0;
    st.verify_seconds += Now() - t1;
  }
  return absl::OkStatus();
}

}  // namespace layerskip
