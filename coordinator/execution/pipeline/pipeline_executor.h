#pragma once
// An Executor over pipeline-parallel workers (docs/pipeline.md). Stage 0 drafts (embedding, layers [0, E),
// a copy of the exit head); stages 1.. verify in contiguous layer ranges, activations moving stage to
// stage over the transport; the last stage returns the verifier's targets (or logits when sampling); the
// coordinator accepts (stop conditions, the sequences' generators) and sends every stage the new lengths,
// so every stage's KV cache rolls back the same way (the new lengths ride on the slot's next Draft/Verify).
// Pipelining: several steps (micro-batches of disjoint sequences) are in flight at once, each driven by its
// own thread (draft on stage 0, then verify on the later stages), so while the later stages verify one,
// stage 0 drafts the next; Step splits its sequences into micro-batches the same way.
//
// Faults: a failed call ends the step with UNAVAILABLE naming the stage; Health() is UNAVAILABLE until
// the stage is back (a restarted worker gets its shard reloaded and the links re-wired), then OK. A
// data-plane failure with every stage up (a broken or refused link, a bad frame, a round whose
// activations never came) also ends the step with UNAVAILABLE, never a fatal error: the links are re-wired
// before the next step, so the engine loop suspends and resumes its streams as it does on worker loss.
// Liveness: every stage gets a heartbeat (StageHealth); a silent stage cancels the steps in flight and makes
// Liveness() UNAVAILABLE at once. Each step has a deadline derived from measured step times (StepDeadline).
// Start: with wire_in_background, Create returns before any worker is reached and the first Health()
// calls (with backoff) load and wire the stages; until then Liveness() is UNAVAILABLE.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/execution/pipeline/stage_client.h"
#include "coordinator/execution/pipeline/stage_health.h"
#include "coordinator/execution/pipeline/step_deadline.h"
#include "coordinator/execution/pipeline/stage_plan.h"
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
  std::string weights;                // "int8": the workers quantise their layers; empty: as dtype
  int threads = 0;                    // per worker (0: all its cores)
  std::string token;                  // cluster token
  std::string tls_ca_file;            // PEM roots to verify the workers' TLS; empty: plaintext
  std::string transport = "tcp";      // tcp | nccl | ipc (docs/pipeline.md)
  int micro_batches = 0;              // steps in flight, and Step's split (0: one per stage; 1: none)
  // Timeouts (the coordinator's flags; docs/pipeline.md).
  absl::Duration rpc_timeout = absl::Seconds(60);        // --rpc-timeout: a step's cap, Connect (wiring)
  absl::Duration step_timeout_floor = absl::Seconds(10); // --step-timeout-floor: least budget of a step
  absl::Duration connect_timeout = absl::Seconds(5);     // --connect-timeout: Health at start, Release, Stats
  absl::Duration load_timeout = absl::Minutes(10);       // --load-timeout: LoadShard
  absl::Duration heartbeat_interval = absl::Seconds(1);  // --heartbeat-interval: also each probe's deadline
  int heartbeat_misses = 3;                              // --heartbeat-misses: beats missed in a row = silent
  absl::Duration workers_wait = absl::Minutes(5);        // --workers-wait: how long start waits for workers
  bool wire_in_background = false;  // Create returns at once; Health() wires (the coordinator: NOT_SERVING until)
};

// Busy share of one stage since its worker started.
struct StageStats {
  std::string name;
  double uptime_seconds = 0, busy_seconds = 0, transport_wait_seconds = 0;
  int64_t rounds = 0, rows = 0, bytes_sent = 0, bytes_received = 0;
  int64_t data_links_accepted = 0, data_links_rejected = 0, data_frames_rejected = 0;  // its data port
  double busy_share() const { return uptime_seconds > 0 ? busy_seconds / uptime_seconds : 0.0; }
};

// Parses "HOST:PORT,HOST:PORT" (the --workers flag).
std::vector<std::string> ParseWorkerList(const std::string& flag);

// True for the codes a round ends with when the data plane (or a stage's answer) failed rather than the
// computation: UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, DATA_LOSS, ABORTED.
bool IsDataPlaneFailure(const absl::Status& s);

class PipelineExecutor : public Executor {
 public:
  // Reads the model's config.json, plans the stages, reaches every worker (UNAVAILABLE naming the ones
  // that do not answer), loads the shards (FAILED_PRECONDITION when a worker holds another shard or
  // serves another model) and wires the transport.
  static absl::StatusOr<std::unique_ptr<PipelineExecutor>> Create(const PipelineOptions& options);
  ~PipelineExecutor() override;  // finishes the steps still in flight

  const LlamaConfig& config() const override { return config_; }
  int num_slots() const override { return options_.num_slots; }
  int context_length() const override { return context_; }
  // One round for `seqs` (see Executor). Self-speculative requests must use exit layer E = the end of
  // stage 0; autoregressive decoding is a round with no drafts; early exit needs its layer on stage 0.
  absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override;
  int max_in_flight() const override;
  absl::StatusOr<uint64_t> StartStep(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override;
  absl::Status FinishStep(uint64_t id) override;
  void Release(int slot) override;

  // OK when every stage is up with its shard (tries to restore down stages first), else UNAVAILABLE
  // naming them. The service maps this to SERVING / NOT_SERVING.
  absl::Status Health() override;
  // Without RPCs: UNAVAILABLE before the first wiring and while a stage misses its heartbeats.
  absl::Status Liveness() override;
  std::vector<StageStats> Stats();
  // layerskip:data_plane_{links_accepted,links_rejected,frames_rejected}_total{stage="i"}: each stage's data
  // port since its worker started (Worker.Stats; 300 ms per stage). Empty while a restore holds the stages.
  std::string RenderMetrics(const std::string& model_name) override;
  const std::vector<StageRange>& plan() const { return plan_; }
  int exit_layer() const { return plan_.front().end_layer; }
  int fixed_exit_layer() const override { return exit_layer(); }

 private:
  explicit PipelineExecutor(const PipelineOptions& options)
      : options_(options), step_deadline_(options.step_timeout_floor, options.rpc_timeout) {}
  absl::Status Connect(StageClient& stage);      // channel + stub
  absl::Status LoadStage(StageClient& stage);    // LoadShard + checks
  absl::Status Wire();                           // the transport links, every stage
  absl::Status RestoreLocked();                  // reload down stages, re-wire
  void ProbeLocked();                            // marks stages that are gone or restarted as down
  // After a failed call: probe; UNAVAILABLE if a stage is down or the data plane failed (then re-wire).
  absl::Status FailLocked(const absl::Status& cause);
  absl::Status CheckStagesUp();                        // restores down stages (with backoff)
  absl::Status TryRestoreLocked();                     // RestoreLocked with backoff between failed attempts
  void OnStageSilent(int stage);                       // StageHealth: cancel the steps in flight

  // One step in flight (pipeline_round.cc): its sequences (read at the start, written at the finish, on
  // the caller's thread), the draft call, then the verify calls that its thread (driver) launches.
  struct StepInFlight {
    uint64_t id = 0;
    std::vector<Sequence*> seqs;
    bool early_exit = false;
    SpeculationConfig cfg;
    v1::VerifyRequest verify;  // slots, cached lengths, want_logits; Drive adds the rows and drafts
    std::unique_ptr<PendingCall<v1::DraftRequest, v1::DraftResponse>> draft;
    std::vector<std::unique_ptr<PendingCall<v1::VerifyRequest, v1::VerifyResponse>>> verifies;  // under flight_mu_
    std::thread driver;
    absl::Status status;  // the driver's outcome
    double started = 0, drafted = 0, verified = 0;
    int rows = 0;                                // rows the step computes (for its deadline)
    absl::Time deadline = absl::InfiniteFuture();  // every call of the step ends by then
  };
  absl::Status StartSpeculative(StepInFlight& r, const DecodeOptions& options);
  absl::Status StartEarlyExit(StepInFlight& r, int exit_layer);
  void Drive(StepInFlight* r);  // the step's thread: wait for the draft, verify on the later stages
  void AbortInFlight();  // a step failed: cancel every call in flight (flight_mu_ held)
  absl::Status ApplySpeculative(StepInFlight& r);
  absl::Status ApplyEarlyExit(StepInFlight& r);

  PipelineOptions options_;
  LlamaConfig config_;
  uint64_t fingerprint_ = 0;
  int context_ = 0;
  std::vector<StageRange> plan_;
  std::mutex mu_;  // the stages; steps and Health may come from different threads
  std::vector<std::unique_ptr<StageClient>> stages_;
  std::set<int> dirty_slots_;  // released while a stage was down: released again on restore
  bool rewire_ = false;        // a data-plane failure: the links are re-wired before the next step
  absl::Time next_restore_attempt_ = absl::InfinitePast();
  absl::Duration restore_backoff_ = absl::ZeroDuration();
  absl::Status last_restore_error_;
  std::atomic<bool> wired_{false};  // the stages were loaded and wired once
  absl::Time start_deadline_ = absl::InfiniteFuture();  // start: --workers-wait from Create
  StepDeadline step_deadline_;
  std::unique_ptr<StageHealth> health_;  // destroyed first (its threads call OnStageSilent)

  std::mutex flight_mu_;  // the rounds in flight and their calls
  std::map<uint64_t, std::unique_ptr<StepInFlight>> in_flight_;
  uint64_t next_step_ = 1;  // step ids, also the rounds' numbers on the wire (the transport's frame key)
  bool aborting_ = false;  // a round failed: the others are being cancelled until none is in flight
};

}  // namespace layerskip::pipeline
