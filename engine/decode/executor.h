#pragma once
// What a scheduler drives: decoding steps for batches of sequences on one engine, local (this file) or a
// pipeline of remote workers (coordinator/). Sequences own their KV-cache slot; the executor owns the cache.
#include <cstdint>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/decode/decode_step.h"
#include "engine/decode/sequence.h"
#include "engine/runtime/backend.h"

namespace layerskip {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual const LlamaConfig& config() const = 0;
  virtual int num_slots() const = 0;
  virtual int context_length() const = 0;  // positions per sequence
  // One step for the unfinished sequences in `seqs`, which all use `options`: one token each
  // (autoregressive, early exit; the first step of a sequence prefills its prompt) or one self-speculative
  // round. An error leaves the sequences' caches unusable: the caller ends them.
  virtual absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) = 0;
  // Steps in flight (a pipeline keeps one per stage busy): up to max_in_flight() steps on disjoint
  // sequences may run at once. StartStep begins one and returns its id (an error: nothing was started);
  // FinishStep waits for it and applies it to its sequences, with Step's error contract. Every started step
  // is finished once, and the sequences are not touched in between. This base runs Step inside StartStep.
  virtual int max_in_flight() const { return 1; }
  virtual absl::StatusOr<uint64_t> StartStep(const std::vector<Sequence*>& seqs, const DecodeOptions& options);
  virtual absl::Status FinishStep(uint64_t id);
  // > 0: self-speculative steps must draft at this exit layer (a pipeline's first stage ends there); 0: any.
  virtual int fixed_exit_layer() const { return 0; }
  // Forgets a slot's cached positions so a new sequence can use it.
  virtual void Release(int slot) = 0;
  // OK when every part can serve. After a Step failed with UNAVAILABLE (a remote stage died), probing may
  // restore the part (a restarted worker reloads its shard); the caches of all sequences are then gone.
  virtual absl::Status Health() { return absl::OkStatus(); }
  // Extra Prometheus text (exposition format 0.0.4) for /metrics, each series labelled
  // model_name="<model_name>" (escaped by the implementation); empty: none. The pipeline reports its stages' data ports.
  virtual std::string RenderMetrics(const std::string& model_name) { return ""; }
  // Cheap (no I/O), called every loop round: UNAVAILABLE when a part is known not to serve (a remote stage
  // missed its heartbeats, or is not wired yet); the caller then treats it like a Step's UNAVAILABLE.
  virtual absl::Status Liveness() { return absl::OkStatus(); }

 private:
  uint64_t next_step_ = 1;
  std::map<uint64_t, absl::Status> finished_;  // the base's steps, run in StartStep
};

// The engine in this process: one backend (CPU or CUDA, engine/runtime/backend.h) whose KV cache has one
// slot per sequence the scheduler may run at once.
class LocalExecutor : public Executor {
 public:
  explicit LocalExecutor(std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {}
  const LlamaConfig& config() const override { return backend_->config(); }
  int num_slots() const override { return backend_->num_slots(); }
  int context_length() const override { return backend_->context_length(); }
  absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override;
  void Release(int slot) override { backend_->Reset(slot); }
  const Backend& backend() const { return *backend_; }

 private:
  std::unique_ptr<Backend> backend_;
};

}  // namespace layerskip
