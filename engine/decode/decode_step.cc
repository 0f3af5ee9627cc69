#include "engine/decode/decode_step.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/decode/autoregressive_step.h"
#include "engine/util/status.h"

namespace layerskip {

absl::Status ValidateDecodeOptions(const DecodeOptions& o, int num_layers) {
  switch (o.mode) {
    case DecodeMode::kAutoregressive:
      return absl::OkStatus();
    case DecodeMode::kEarlyExit:
      if (o.exit_layer < 1 || o.exit_layer > num_layers)
        return absl::InvalidArgumentError(
            absl::StrCat("exit_layer ", o.exit_layer, " must be in [1, ", num_layers, "] for early-exit decoding"));
      return absl::OkStatus();
    case DecodeMode::kSelfSpeculative: {
      SpeculationConfig s = o.speculation;
      if (o.automatic()) {
        if (!o.cost || !o.cost->Valid() || o.cost->num_layers != num_layers)
          return absl::InvalidArgumentError("automatic speculation needs a cost model of this model");
        if (o.auto_speculations) s.speculations = 1;
      }
      return ValidateSpeculation(s, o.auto_exit_layer ? 1 : o.exit_layer, num_layers);
    }
  }
  return absl::InvalidArgumentError("unknown decode mode");
}

SpeculationPolicy MakePolicy(const DecodeOptions& o) {
  PolicyOptions p = o.policy;
  p.exit_layer = o.auto_exit_layer ? 0 : o.exit_layer;
  p.speculations = o.auto_speculations ? -1 : o.speculation.speculations;
  return SpeculationPolicy(*o.cost, p);
}

absl::Status AutomaticStep(Backend& backend, const std::vector<Sequence*>& seqs, const DecodeOptions& options,
                           SpeculationPolicy& policy) {
  int batch = 0;
  for (const Sequence* s : seqs) batch += !s->finished();
  if (batch == 0) return absl::OkStatus();
  const SpeculationChoice choice = policy.Choose(batch);
  std::vector<std::pair<int64_t, int64_t>> before;  // (drafted, accepted) per sequence
  bool prefill = false;  // a prompt in the step: its time is not the decoding step the cost model predicts
  for (const Sequence* s : seqs) {
    before.emplace_back(s->stats().drafted, s->stats().accepted);
    prefill |= !s->finished() && s->pending().size() > 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (choice.speculations == 0) {
    LS_RETURN_IF_ERROR(AutoregressiveStep(backend, seqs, backend.num_layers()));
  } else {
    SpeculationConfig spec = options.speculation;
    spec.speculations = choice.speculations;
    spec.adaptive = false;
    LS_RETURN_IF_ERROR(SelfSpeculativeRound(backend, seqs, choice.exit_layer, spec));
  }
  if (!prefill)
    policy.ObserveTime(choice.exit_layer, choice.speculations, batch,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  for (size_t j = 0; j < seqs.size(); ++j) {
    SpecStats& st = seqs[j]->stats();
    const int drafted = static_cast<int>(st.drafted - before[j].first);
    const int accepted = static_cast<int>(st.accepted - before[j].second);
    if (choice.speculations > 0) policy.Observe(choice.exit_layer, drafted, accepted);
    st.RecordChoice(choice.speculations ? choice.exit_layer : 0, choice.speculations, choice.predicted_speedup);
  }
  return absl::OkStatus();
}

absl::Status DecodeStep(Backend& backend, const std::vector<Sequence*>& seqs, const DecodeOptions& options) {
  switch (options.mode) {
    case DecodeMode::kAutoregressive:
      return AutoregressiveStep(backend, seqs, backend.num_layers());
    case DecodeMode::kEarlyExit:
      return AutoregressiveStep(backend, seqs, options.exit_layer);
    case DecodeMode::kSelfSpeculative:
      return SelfSpeculativeRound(backend, seqs, options.exit_layer, options.speculation);
  }
  return absl::InvalidArgumentError("unknown decode mode");
}

}  // namespace layerskip
