#include "engine/decode/generate.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/decode/step.h"
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
      s.exit_layer = o.auto_exit_layer ? 1 : o.exit_layer;
      if (o.automatic()) {
        if (!o.cost || !o.cost->Valid() || o.cost->num_layers != num_layers)
          return absl::InvalidArgumentError("automatic speculation needs a cost model of this model");
        if (o.auto_speculations) s.speculations = 1;
      }
      return ValidateSpeculation(s, num_layers);
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

absl::Status AutomaticStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                           const DecodeOptions& options, SpeculationPolicy& policy) {
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
    LS_RETURN_IF_ERROR(AutoregressiveStep(model, cache, seqs, model.num_layers()));
  } else {
    SpeculationConfig spec = options.speculation;
    spec.exit_layer = choice.exit_layer;
    spec.speculations = choice.speculations;
    spec.adaptive = false;
    LS_RETURN_IF_ERROR(SelfSpeculativeRound(model, cache, seqs, spec));
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

absl::Status DecodeStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                        const DecodeOptions& options) {
  switch (options.mode) {
    case DecodeMode::kAutoregressive:
      return AutoregressiveStep(model, cache, seqs, model.num_layers());
    case DecodeMode::kEarlyExit:
      return AutoregressiveStep(model, cache, seqs, options.exit_layer);
    case DecodeMode::kSelfSpeculative: {
      SpeculationConfig spec = options.speculation;
      spec.exit_layer = options.exit_layer;
      return SelfSpeculativeRound(model, cache, seqs, spec);
    }
  }
  return absl::InvalidArgumentError("unknown decode mode");
}

absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(const Model& model, KvCache& cache,
                                                          const std::vector<std::vector<int>>& prompts,
                                                          const std::vector<GenerationParams>& params,
                                                          const DecodeOptions& options) {
  LS_RETURN_IF_ERROR(ValidateDecodeOptions(options, model.num_layers()));
  if (prompts.size() != params.size()) return absl::InvalidArgumentError("one GenerationParams per prompt");
  if (static_cast<int>(prompts.size()) > cache.num_slots())
    return absl::InvalidArgumentError(absl::StrCat(prompts.size(), " prompts but the cache has ", cache.num_slots(), " slots"));
  const int context = ContextLength(model, cache);
  std::vector<Sequence> seqs;
  seqs.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return absl::InvalidArgumentError("prompt is empty");
    if (static_cast<int>(prompts[i].size()) >= context)
      return absl::OutOfRangeError(absl::StrCat("prompt of ", prompts[i].size(), " tokens does not fit the context of ",
                                                context, " positions (it needs room for one generated token)"));
    for (int id : prompts[i])
      if (id < 0 || id >= model.vocab_size())
        return absl::InvalidArgumentError(absl::StrCat("prompt id ", id, " is outside the vocabulary [0, ", model.vocab_size(), ")"));
    cache.Reset(static_cast<int>(i));
    seqs.emplace_back(static_cast<int>(i), prompts[i], params[i]);
  }
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);

  std::vector<GenerateResult> results(seqs.size());
  std::unique_ptr<SpeculationPolicy> policy;  // automatic speculation: one policy for this batch
  if (options.automatic()) policy = std::make_unique<SpeculationPolicy>(MakePolicy(options));
  auto now = [] { return std::chrono::steady_clock::now(); };
  bool first = true;
  for (;;) {
    bool any = false;
    for (const Sequence& s : seqs) any |= !s.finished();
    if (!any) break;
    const auto t0 = now();
    if (policy) LS_RETURN_IF_ERROR(AutomaticStep(model, cache, ptrs, options, *policy));
    else LS_RETURN_IF_ERROR(DecodeStep(model, cache, ptrs, options));
    const double dt = std::chrono::duration<double>(now() - t0).count();
    for (GenerateResult& r : results) (first ? r.prefill_seconds : r.decode_seconds) += dt;
    first = false;
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    results[i].ids = seqs[i].generated();
    results[i].finish_reason = seqs[i].finish_reason();
    results[i].spec = seqs[i].stats();
  }
  return results;
}

}  // namespace layerskip
