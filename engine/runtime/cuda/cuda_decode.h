#pragma once
// Greedy decoding of one sequence on the device: autoregressive, and LayerSkip self-speculative (draft with
// layers [0, E) + the shared exit head, verify with [E, L) over the exit cache). Token choice stays on the
// device; the host sees ids once per call (autoregressive) or once per round (self-speculative), and a
// round after the first is one CUDA graph launch. No eos handling: exactly max_new_tokens are produced
// (tests and benchmarks). Greedy self-speculative ids equal autoregressive ids because every kernel is
// batch-invariant (docs/cuda.md).
//
// Nothing serves through this loop: the CLI, the coordinator and the workers decode on the CUDA backend
// (cuda_backend.h) through the shared decoding code (engine/decode/), whose decode steps replay CUDA graphs
// per batch-size bucket. This single-sequence loop (a whole round in one graph) stays as the reference that
// tests/gpu/cuda_bench.cc and tests/gpu/cuda_model_test.cc measure and check the backend's fast path against.
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/runtime/cuda/cuda_kv_cache.h"
#include "engine/runtime/cuda/cuda_model.h"

namespace layerskip::cuda {

// Prefills `prompt` into an empty `slot` of `cache` (all layers) and generates max_new_tokens ids with the
// exit head after layer exit_layer (num_layers: the full model; less: early exit).
absl::StatusOr<std::vector<int>> GreedyAutoregressive(CudaModel& model, CudaKvCache* cache, int slot,
                                                      absl::Span<const int> prompt, int max_new_tokens,
                                                      int exit_layer);

struct SelfSpeculativeStats {
  int rounds = 0;
  int drafted = 0;
  int accepted = 0;
  bool graph = false;  // later rounds ran as a CUDA graph
};

// Greedy self-speculative decoding of `prompt` in an empty `slot`: rounds of `speculations` drafts.
// use_graph: capture a round (drafting + verification + argmax) once and replay it. speculations = 0 is
// autoregressive decoding with one CUDA graph per token (the fair baseline for the graph rounds).
absl::StatusOr<std::vector<int>> GreedySelfSpeculative(CudaModel& model, CudaKvCache* cache, int slot,
                                                       absl::Span<const int> prompt, int max_new_tokens,
                                                       int exit_layer, int speculations, bool use_graph,
                                                       SelfSpeculativeStats* stats = nullptr);

}  // namespace layerskip::cuda
