#pragma once
// The one place the coordinator constructs its Executor: the engine in this process today; a pipeline of
// remote workers (coordinator/pipeline/, --workers) plugs in here behind the same interface.
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/decode/executor.h"
#include "engine/runtime/device.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip::coordinator {

struct ExecutorOptions {
  int num_slots = 32;
  DeviceSpec device;         // --device: where the local engine computes (cpu, cuda:N)
  std::string workers;       // comma-separated worker addresses; empty: the local engine
  // Pipeline (--workers): see coordinator/pipeline/pipeline_executor.h and docs/pipeline.md.
  std::string model_dir;      // the same path on every worker
  std::string stages;         // --stages 0-3,4-11,12-15; empty: automatic, stage 0 ending at exit_layer
  int exit_layer = 0;         // automatic plan's E (0: half the layers)
  std::string cluster_token;  // --cluster-token-file: the workers' shared token
  std::string tls_ca_file;    // --workers-tls-ca: PEM roots for the workers' TLS; empty: plaintext
  std::string transport = "tcp";
  std::string dtype = "bf16";
  std::string weights;  // "int8" or empty (as dtype)
  int max_context = 4096;
  int64_t kv_positions = 0;          // --kv-cache-positions (0: slots x context); engine/runtime/kv_budget.h
  double gpu_memory_fraction = 0;    // --gpu-memory-fraction (0: the planner's default); CUDA only
  // Wraps the executor once built (tests/service/failing_executor.h injects faults this way); null: none.
  std::function<std::unique_ptr<Executor>(std::unique_ptr<Executor>)> wrap;
  // Pipeline timeouts and liveness (flags of the same names; defaults in docs/pipeline.md).
  absl::Duration rpc_timeout = absl::Seconds(60);
  absl::Duration step_timeout_floor = absl::Seconds(10);
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration load_timeout = absl::Minutes(10);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  int heartbeat_misses = 3;
  absl::Duration workers_wait = absl::Minutes(5);
};

// `model` outlives the executor.
absl::StatusOr<std::unique_ptr<Executor>> MakeExecutor(const LoadedModel* model, const ExecutorOptions& options);

}  // namespace layerskip::coordinator
