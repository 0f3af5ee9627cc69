#pragma once
// An Executor over pipeline-parallel workers (docs/pipeline.md). Stage 0 drafts (embedding, layers [0, E),
// a copy of the exit head); stages 1.. verify in contiguous layer ranges, activations moving stage to
// stage over the transport; the last stage returns the verifier's targets (or logits when sampling); the
// coordinator accepts (stop conditions, the sequences' generators) and sends every stage the new lengths,
// so every stage's KV cache rolls back the same way. A step splits its sequences into micro-batches: while
// the later stages verify one, stage 0 drafts the next.
//
// Faults: a failed call ends the step with UNAVAILABLE naming the stage; Health() is UNAVAILABLE until
// the stage is back (a restarted worker gets its shard reloaded and the links re-wired), then OK.
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/pipeline/stage_client.h"
#include "coordinator/pipeline/stage_plan.h"
#include "engine/decode/executor.h"

namespace layerskip::pipeline {

struct PipelineOptions {
  std::string model_path;             // the same path on every worker (shared filesystem or same layout)
  std::vector<std::string> workers;   // HOST:PORT, stage order
  std::string stages;                 // explicit plan "0-3,4-11,12-15"; empty: automatic
  int exit_layer = 0;                 // automatic plan: E (0: L / 2)
  int num_slots = 8;
  int max_context = 4096;
  std::string dtype = "bf16";         // weights on the workers: bf16 | f32
  int threads = 0;                    // per worker (0: all its cores)
  std::string token;                  // cluster token
  std::string tls_ca_file;            // PEM roots to verify the workers' TLS; empty: plaintext
  std::string transport = "tcp";      // tcp | nccl
  int micro_batches = 2;              // per step (1: no pipelining inside a step)
  absl::Duration rpc_timeout = absl::Seconds(60);
  absl::Duration connect_timeout = absl::Seconds(5);
};

// Busy share of one stage since its worker started.
struct StageStats {
  std::string name;
  double uptime_seconds = 0, busy_seconds = 0, transport_wait_seconds = 0;
  int64_t rounds = 0, rows = 0, bytes_sent = 0, bytes_received = 0;
  double busy_share() const { return uptime_seconds > 0 ? busy_seconds / uptime_seconds : 0.0; }
};

// Parses "HOST:PORT,HOST:PORT" (the --workers flag).
std::vector<std::string> ParseWorkerList(const std::string& flag);

class PipelineExecutor : public Executor {
 public:
  // Reads the model's config.json, plans the stages, reaches every worker (UNAVAILABLE naming the ones
  // that do not answer), loads the shards (FAILED_PRECONDITION when a worker holds another shard or
  // serves another model) and wires the transport.
  static absl::StatusOr<std::unique_ptr<PipelineExecutor>> Create(const PipelineOptions& options);

  const LlamaConfig& config() const override { return config_; }
  int num_slots() const override { return options_.num_slots; }
  int context_length() const override { return context_; }
  // One round for `seqs` (see Executor). Self-speculative requests must use exit layer E = the end of
  // stage 0; autoregressive decoding is a round with no drafts; early exit needs its layer on stage 0.
  absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override;
  void Release(int slot) override;

  // OK when every stage is up with its shard (tries to restore down stages first), else UNAVAILABLE
  // naming them. The service maps this to SERVING / NOT_SERVING.
  absl::Status Health() override;
  std::vector<StageStats> Stats();
  const std::vector<StageRange>& plan() const { return plan_; }
  int exit_layer() const { return plan_.front().end_layer; }

 private:
  explicit PipelineExecutor(const PipelineOptions& options) : options_(options) {}
  absl::Status Connect(StageClient& stage);      // channel + stub
  absl::Status LoadStage(StageClient& stage);    // LoadShard + checks
  absl::Status Wire();                           // the transport links, every stage
  absl::Status RestoreLocked();                  // reload down stages, re-wire
  void ProbeLocked();                            // marks stages that are gone or restarted as down
  absl::Status FailLocked(const absl::Status& cause);  // after a failed call: probe, UNAVAILABLE if a stage is down
  absl::Status SpeculativeStep(const std::vector<Sequence*>& active, const DecodeOptions& options);
  absl::Status EarlyExitStep(const std::vector<Sequence*>& active, int exit_layer);

  PipelineOptions options_;
  LlamaConfig config_;
  uint64_t fingerprint_ = 0;
  int context_ = 0;
  std::vector<StageRange> plan_;
  std::mutex mu_;  // stages and the round counter; Step and Health may come from different threads
  std::vector<std::unique_ptr<StageClient>> stages_;
  std::set<int> dirty_slots_;  // released while a stage was down: released again on restore
  uint64_t next_round_ = 1;
  absl::Time last_restore_attempt_ = absl::InfinitePast();
};

}  // namespace layerskip::pipeline
