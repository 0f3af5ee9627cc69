#pragma once
// A worker's part of the model: layers [first, end) (+ embedding / exit head), their KV cache, and the
// compute of each round on it: drafting (first stage), a verification slice (later stages), the last
// stage's targets and acceptance, and rollback. One thread at a time calls into a Shard (the model's
// thread pool is not re-entrant); the service serialises calls.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/weights.h"
#include "engine/runtime/kv_cache.h"
#include "engine/runtime/model.h"
#include "engine/util/thread_pool.h"
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

// FNV-1a 64 of the model directory's config.json (0 when unreadable): who serves which model.
uint64_t ConfigFingerprint(const std::filesystem::path& model_dir);

class Shard {
 public:
  static absl::StatusOr<std::unique_ptr<Shard>> Load(const ShardSpec& spec);

  const ShardSpec& spec() const { return spec_; }
  const LlamaConfig& config() const { return model_->config(); }
  int hidden() const { return model_->hidden_size(); }
  bool is_first() const { return spec_.first_layer == 0; }
  bool is_last() const { return spec_.end_layer == model_->num_layers(); }
  void FillInfo(v1::ShardInfo* info) const;

  // First stage: one drafting phase for the request's sequences. rows becomes the exit rows of every
  // sequence, in request order: [sum of results.rows, D].
  absl::Status Draft(const v1::DraftRequest& req, v1::DraftResponse* resp, std::vector<float>* rows);
  // First stage, early-exit mode: pending tokens through [0, early_exit_layer), the exit head picks one.
  absl::Status EarlyExit(const v1::DraftRequest& req, v1::DraftResponse* resp);
  // Later stages: x[rows, D] (the sequences' rows in request order) through [first, end) in place; the
  // last stage also fills resp with the targets, accepted counts and (when asked) logits.
  absl::Status Verify(const v1::VerifyRequest& req, std::vector<float>& x, v1::VerifyResponse* resp);
  // Rollback: every layer of `slot` keeps at most `length` positions (and closes its open round).
  absl::Status Truncate(int slot, int length);
  void Reset(int slot);

 private:
  Shard() = default;
  // The slot's cache must hold `cached` positions. Folded rollback: a Draft or Verify leaves its slots'
  // round open ([start, end) positions written); the next call on the slot carries the accepted length,
  // which must lie in [start, end], and the stage truncates to it first (no separate Accept call).
  absl::Status Settle(int slot, int cached, int layer_a, int layer_b);
  absl::Status CheckSlot(int slot, int cached, int layer_a, int layer_b) const;

  ShardSpec spec_;
  uint64_t fingerprint_ = 0;
  std::shared_ptr<const ModelWeights> weights_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int> open_start_;  // per slot: the cached length when its open round began; -1: none
};

}  // namespace layerskip::worker
