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

 private:
  void Layer(int l, const TokenBatch& batch, float* x, KvCache* cache) const;

  std::shared_ptr<const ModelWeights> weights_;
  cpu::RopeTable rope_;
  ThreadPool* pool_;
};

}  // namespace layerskip
