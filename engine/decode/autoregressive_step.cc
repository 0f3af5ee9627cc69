#include "engine/decode/autoregressive_step.h"

#include "engine/util/status.h"
#include "kernels/sampling.h"

namespace layerskip {

int ChooseToken(const float* logits, int64_t V, Sequence& seq) {
  const SamplingParams& sp = seq.params().sampling;
  if (sp.greedy()) return cpu::Argmax(logits, V);
  std::vector<float> probs(V);
  cpu::SamplingProbs(logits, V, sp, probs.data());
  return cpu::SampleFromProbs(probs.data(), V, seq.rng().Uniform());
}

absl::Status AutoregressiveStep(Backend& backend, const std::vector<Sequence*>& seqs, int exit_layer) {
  const int V = backend.vocab_size();
  TokenBatch batch;
  std::vector<int> ids;
  std::vector<Sequence*> greedy, sampling;
  std::vector<int> greedy_rows, sampling_rows;  // each sequence's last row
  for (Sequence* s : seqs) {
    if (s->finished()) continue;
    for (size_t i = 0; i < s->pending().size(); ++i) {
      batch.AddToken(s->slot(), s->cached() + static_cast<int>(i), static_cast<int>(s->prompt().size()));
      ids.push_back(s->pending()[i]);
    }
    const bool g = s->params().sampling.greedy();
    (g ? greedy : sampling).push_back(s);
    (g ? greedy_rows : sampling_rows).push_back(batch.size() - 1);
  }
  if (batch.size() == 0) return absl::OkStatus();
  // Embed, forward and the greedy rows' argmax in one call (the backend's decode fast path); the
  // activations stay only when sampling rows need logits.
  std::unique_ptr<Activations> x;
  std::vector<int> tokens(greedy.size());
  LS_RETURN_IF_ERROR(backend.DecodeArgmax(exit_layer, batch, ids, /*draft=*/false, greedy_rows, tokens.data(),
                                          sampling.empty() ? nullptr : &x));
  std::vector<float> logits(sampling.size() * static_cast<size_t>(V));
  if (!sampling.empty()) LS_RETURN_IF_ERROR(backend.ExitHead(*x, sampling_rows, logits.data()));
  const int context = backend.context_length();
  for (size_t j = 0; j < greedy.size(); ++j) {
    greedy[j]->MarkPendingCached();
    greedy[j]->Append(tokens[j], context);
  }
  for (size_t j = 0; j < sampling.size(); ++j) {
    sampling[j]->MarkPendingCached();
    sampling[j]->Append(ChooseToken(logits.data() + j * V, V, *sampling[j]), context);
  }
  return absl::OkStatus();
}

}  // namespace layerskip
