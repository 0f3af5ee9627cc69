#pragma once
// The Llama forward pass over a layer range, and the exit head (final norm + LM head) on any hidden state.
// This is the API that decoding (autoregressive, early exit, self-speculative) and pipeline workers call.
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/weights.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/token_batch.h"
#include "engine/util/thread_pool.h"
#include "kernels/rope.h"

namespace layerskip {

class Model {
 public:
  // max_positions: the largest KV-cache capacity used with this model (sizes the RoPE table).
  Model(std::shared_ptr<const ModelWeights> weights, int max_positions, ThreadPool* pool);

  const LlamaConfig& config() const { return weights_->config; }
  const ModelWeights& weights() const { return *weights_; }
  int num_layers() const { return weights_->config.num_hidden_layers; }
  int hidden_size() const { return weights_->config.hidden_size; }
  int vocab_size() const { return weights_->config.vocab_size; }
  int max_positions() const { return rope_.max_positions(); }
  ThreadPool* pool() const { return pool_; }

  // x[n, D] = embedding rows of ids[n]. InvalidArgument for an id outside [0, V).
  absl::Status Embed(absl::Span<const int> ids, float* x) const;

  // Runs layers [a, b) in place on x[n, D] for the tokens of `batch`: appends each token's K/V to its slot
  // in every layer of [a, b), then attends causally to positions [0, position]. Checks the batch against
  // the cache (consecutive positions from each slot's length, capacity) before touching anything.
  absl::Status Forward(int a, int b, const TokenBatch& batch, float* x, KvCache* cache) const;

  // The exit head: logits[n, V] = lm_head(final_norm(h[n, D])). After layer E-1 this is early exit at E.
  absl::Status ExitHead(const float* h, int n, float* logits) const;

  // The draft head: the exit head over a subset of the vocabulary (those rows of the LM head), writing
  // logits[n, V] with -inf outside the subset; the full exit head when no subset is set. Drafting uses it;
  // verification always uses ExitHead, so decoding stays lossless whatever the subset.
  absl::Status DraftHead(const float* h, int n, float* logits) const;
  // Restricts the draft head to `ids` (distinct, in [0, V); empty: the full head). Copies those LM-head
  // rows. Not thread-safe: call before decoding starts.
  absl::Status SetDraftVocabulary(std::vector<int> ids);
  int draft_vocab_size() const { return draft_head_ ? static_cast<int>(draft_ids_.size()) : vocab_size(); }
  const std::vector<int>& draft_vocabulary() const { return draft_ids_; }

 private:
  void Layer(int l, const TokenBatch& batch, float* x, KvCache* cache) const;

  std::shared_ptr<const ModelWeights> weights_;
  cpu::RopeTable rope_;
  ThreadPool* pool_;
  std::vector<int> draft_ids_;            // the draft head's vocabulary subset (empty: the full head)
  std::unique_ptr<Matrix> draft_head_;    // [K, D]: those rows of the LM head
};

}  // namespace layerskip
