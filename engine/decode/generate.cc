#include "engine/decode/generate.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip {

absl::StatusOr<std::vector<GenerateResult>> GenerateBatch(Backend& backend, const std::vector<std::vector<int>>& prompts,
                                                          const std::vector<GenerationParams>& params,
                                                          const DecodeOptions& options) {
  LS_RETURN_IF_ERROR(ValidateDecodeOptions(options, backend.num_layers()));
  if (prompts.size() != params.size()) return absl::InvalidArgumentError("one GenerationParams per prompt");
  if (static_cast<int>(prompts.size()) > backend.num_slots())
    return absl::InvalidArgumentError(absl::StrCat(prompts.size(), " prompts but the cache has ", backend.num_slots(), " slots"));
  const int context = backend.context_length();
  std::vector<Sequence> seqs;
  seqs.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return absl::InvalidArgumentError("prompt is empty");
    if (static_cast<int>(prompts[i].size()) >= context)
      return absl::OutOfRangeError(absl::StrCat("prompt of ", prompts[i].size(), " tokens does not fit the context of ",
                                                context, " positions (it needs room for one generated token)"));
    for (int id : prompts[i])
      if (id < 0 || id >= backend.vocab_size())
        return absl::InvalidArgumentError(absl::StrCat("prompt id ", id, " is outside the vocabulary [0, ", backend.vocab_size(), ")"));
    backend.Reset(static_cast<int>(i));
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
    if (policy) LS_RETURN_IF_ERROR(AutomaticStep(backend, ptrs, options, *policy));
    else LS_RETURN_IF_ERROR(DecodeStep(backend, ptrs, options));
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
