#include "engine/decode/step.h"

#include <algorithm>
#include <cstring>

#include "engine/util/status.h"

namespace layerskip {

int ContextLength(const Model& model, const KvCache& cache) {
  return std::min({cache.capacity(), model.max_positions(), model.config().max_position_embeddings});
}

int ChooseToken(const float* logits, int64_t V, Sequence& seq) {
  const SamplingParams& sp = seq.params().sampling;
  if (sp.greedy()) return cpu::Argmax(logits, V);
  std::vector<float> probs(V);
  cpu::SamplingProbs(logits, V, sp, probs.data());
  return cpu::SampleFromProbs(probs.data(), V, seq.rng().Uniform());
}

absl::Status AutoregressiveStep(const Model& model, KvCache& cache, const std::vector<Sequence*>& seqs,
                                int exit_layer) {
  const int D = model.hidden_size(), V = model.vocab_size();
  TokenBatch batch;
  std::vector<int> ids, last_row;
  std::vector<Sequence*> active;
  for (Sequence* s : seqs) {
    if (s->finished()) continue;
    for (size_t i = 0; i < s->pending().size(); ++i) {
      batch.Add(s->slot(), s->cached() + static_cast<int>(i));
      ids.push_back(s->pending()[i]);
    }
    last_row.push_back(batch.size() - 1);
    active.push_back(s);
  }
  if (active.empty()) return absl::OkStatus();
  std::vector<float> x(ids.size() * D);
  LS_RETURN_IF_ERROR(model.Embed(ids, x.data()));
  LS_RETURN_IF_ERROR(model.Forward(0, exit_layer, batch, x.data(), &cache));
  std::vector<float> h(active.size() * D), logits(active.size() * static_cast<size_t>(V));
  for (size_t j = 0; j < active.size(); ++j)
    std::memcpy(h.data() + j * D, x.data() + static_cast<size_t>(last_row[j]) * D, sizeof(float) * D);
  LS_RETURN_IF_ERROR(model.ExitHead(h.data(), static_cast<int>(active.size()), logits.data()));
  const int context = ContextLength(model, cache);
  for (size_t j = 0; j < active.size(); ++j) {
    active[j]->MarkPendingCached();
    active[j]->Append(ChooseToken(logits.data() + j * V, V, *active[j]), context);
  }
  return absl::OkStatus();
}

}  // namespace layerskip
