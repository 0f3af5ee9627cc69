// layerskip-coordinator-failing: the real coordinator with one more flag for the service tests,
// --fail-after-steps N: its executor fails every step after the first N (tests/service/failing_executor.h).
#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_main.h"
#include "engine/util/status.h"
#include "tests/service/failing_executor.h"

int main(int argc, char** argv) {
  using namespace layerskip;
  coordinator::CoordinatorHooks hooks;
  hooks.extra_flags = {"fail-after-steps"};
  hooks.configure = [](const flags::Flags& f, coordinator::ServerOptions* o) -> absl::Status {
    LS_ASSIGN_OR_RETURN(int64_t steps, f.GetInt("fail-after-steps", 0));
    if (steps < 0 || steps > (1 << 30)) return absl::InvalidArgumentError("--fail-after-steps must be in [0, 2^30]");
    if (steps > 0)
      o->executor.wrap = [steps](std::unique_ptr<Executor> inner) -> std::unique_ptr<Executor> {
        return std::make_unique<testing::FailingExecutor>(std::move(inner), static_cast<int>(steps));
      };
    return absl::OkStatus();
  };
  return coordinator::RunCoordinator(argc, argv, hooks);
}
