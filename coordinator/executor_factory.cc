#include "coordinator/executor_factory.h"

#include "absl/strings/str_cat.h"
#include "coordinator/pipeline/pipeline_executor.h"

namespace layerskip::coordinator {
namespace {

// Fault injection for the service tests: behaves like `inner` until `steps` steps have run, then fails.
class FailingExecutor : public Executor {
 public:
  FailingExecutor(std::unique_ptr<Executor> inner, int steps) : inner_(std::move(inner)), left_(steps) {}
  const LlamaConfig& config() const override { return inner_->config(); }
  int num_slots() const override { return inner_->num_slots(); }
  int context_length() const override { return inner_->context_length(); }
  absl::Status Step(const std::vector<Sequence*>& seqs, const DecodeOptions& options) override {
    if (left_-- <= 0) return absl::InternalError("injected engine failure (--fail-after-steps)");
    return inner_->Step(seqs, options);
  }
  void Release(int slot) override { inner_->Release(slot); }
  absl::Status Health() override { return inner_->Health(); }
  absl::Status Liveness() override { return inner_->Liveness(); }

 private:
  std::unique_ptr<Executor> inner_;
  int left_;
};

}  // namespace

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
    executor = std::make_unique<LocalExecutor>(model, options.num_slots);
  }
  if (options.fail_after_steps > 0)
    executor = std::make_unique<FailingExecutor>(std::move(executor), options.fail_after_steps);
  return executor;
}

}  // namespace layerskip::coordinator
