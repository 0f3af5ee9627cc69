#pragma once
// A worker's part of the model: layers [first, end) (+ embedding / exit head) and their KV cache on one
// backend (CPU or a GPU, engine/runtime/backend.h), and the compute of each pipeline step on it: drafting
// (first stage), a verification slice (later stages), the last stage's targets, and rollback, all through
// the shared speculation bookkeeping (engine/decode/speculative_phases.h). One thread at a time calls into
// a Shard (the backend is not re-entrant); the service serialises calls.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/weights.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/device.h"
#include "layerskip/v1/worker.pb.h"

namespace layerskip::worker {

struct ShardSpec {
  std::string model_path;
  int first_layer = 0, end_layer = 0;
  bool embedding = false, head = false;
  std::string dtype = "bf16";
  bool int8 = false;  // --weights int8 on the coordinator: layers quantised at load
  int num_slots = 1, context = 0, threads = 0;
  static ShardSpec FromRequest(const v1::LoadShardRequest& r);
  // Same model, layers, heads, dtype and cache geometry (threads may differ).
  bool SameShard(const ShardSpec& o) const;
  std::string ToString() const;  // "layers [a,b) +embedding +head of PATH (bf16, 8 slots x 256)"
};

class Shard {
 public:
  // Loads the shard's layers onto `device` (the worker's --device): "cpu" or "cuda:N".
  // gpu_memory_fraction > 0 (a CUDA device): the shard's KV cache must fit that share of the device's memory
  // with its weights and scratch (ResourceExhausted otherwise; engine/runtime/kv_budget.h).
  static absl::StatusOr<std::unique_ptr<Shard>> Load(const ShardSpec& spec, const DeviceSpec& device = DeviceSpec::Cpu(),
                                                     double gpu_memory_fraction = 0);

  const ShardSpec& spec() const { return spec_; }
  const LlamaConfig& config() const { return backend_->config(); }
  int hidden() const { return backend_->hidden_size(); }
  bool is_first() const { return spec_.first_layer == 0; }
  bool is_last() const { return spec_.end_layer == backend_->num_layers(); }
  const DeviceSpec& device() const { return backend_->device(); }
  void FillInfo(v1::ShardInfo* info) const;

  // First stage: one drafting phase for the request's sequences. rows becomes the exit rows of every
  // sequence, in request order: [sum of results.rows, D].
  absl::Status Draft(const v1::DraftRequest& req, v1::DraftResponse* resp, std::vector<float>* rows);
  // First stage, early-exit mode: pending tokens through [0, early_exit_layer), the exit head picks one.
  absl::Status EarlyExit(const v1::DraftRequest& req, v1::DraftResponse* resp);
  // Later stages: x[rows, D] (the sequences' rows in request order) through [first, end) in place; the
  // last stage also fills resp with the targets, accepted counts and (when asked) logits.
  absl::Status Verify(const v1::VerifyRequest& req, std::vector<float>& x, v1::VerifyResponse* resp);
  // Rollback: every layer of `slot` keeps at most `length` positions (and settles its unsettled step).
  absl::Status Truncate(int slot, int length);
  void Reset(int slot);

 private:
  Shard() = default;
  // The slot's cache must hold `cached` positions. Folded rollback: a Draft or Verify leaves its slots'
  // positions unsettled ([start, end) written, acceptance not known yet); the next call on the slot carries
  // the accepted length, which must lie in [start, end], and the stage truncates to it first (no separate
  // Accept call).
  absl::Status Settle(int slot, int cached, int layer_a, int layer_b);
  absl::Status CheckSlot(int slot, int cached, int layer_a, int layer_b) const;

  ShardSpec spec_;
  uint64_t fingerprint_ = 0;
  int64_t weight_bytes_ = 0;
  std::unique_ptr<Backend> backend_;
  std::vector<int> unsettled_from_;  // per slot: its cached length before the unsettled step; -1: settled
};

}  // namespace layerskip::worker
