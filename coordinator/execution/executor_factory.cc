#include "coordinator/execution/executor_factory.h"

#include "absl/strings/str_cat.h"
#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/runtime/factory/create_backend.h"

namespace layerskip::coordinator {

absl::StatusOr<std::unique_ptr<Executor>> MakeExecutor(const LoadedModel* model, const ExecutorOptions& options) {
  if (options.num_slots < 1 || options.num_slots > 4096)
    return absl::InvalidArgumentError(absl::StrCat("--num-slots must be in [1, 4096], got ", options.num_slots));
  std::unique_ptr<Executor> executor;
  if (!options.workers.empty()) {
    pipeline::PipelineOptions p;
    p.model_path = options.model_dir;
    p.workers = pipeline::ParseWorkerList(options.workers);
    p.stages = options.stages;
    p.exit_layer = options.exit_layer;
    p.num_slots = options.num_slots;
    p.max_context = options.max_context;
    p.dtype = options.dtype;
    p.weights = options.weights;
    p.token = options.cluster_token;
    p.tls_ca_file = options.tls_ca_file;
    p.transport = options.transport;
    p.rpc_timeout = options.rpc_timeout;
    p.step_timeout_floor = options.step_timeout_floor;
    p.connect_timeout = options.connect_timeout;
    p.load_timeout = options.load_timeout;
    p.heartbeat_interval = options.heartbeat_interval;
    p.heartbeat_misses = options.heartbeat_misses;
    p.workers_wait = options.workers_wait;
    p.wire_in_background = true;  // the server answers NOT_SERVING until the stages are wired
    auto pipe = pipeline::PipelineExecutor::Create(p);
    if (!pipe.ok()) return pipe.status();
    executor = std::move(pipe).value();
  } else {
    auto backend = CreateBackend(*model, options.device, options.num_slots, options.kv_positions,
                                 options.gpu_memory_fraction);
    if (!backend.ok()) return backend.status();
    executor = std::make_unique<LocalExecutor>(std::move(backend).value());
  }
  if (options.wrap) executor = options.wrap(std::move(executor));
  return executor;
}

}  // namespace layerskip::coordinator
