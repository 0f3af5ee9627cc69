#pragma once
// The layerskip-coordinator process: flags -> ServerOptions, the Server, signals (SIGTERM / SIGINT drain
// and exit 0; a fatal engine error exits 1). The binary's main() is RunCoordinator(argc, argv); a test
// binary (tests/service/) passes hooks to add flags of its own and adjust the options.
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/server.h"
#include "flags/flags.h"

namespace layerskip::coordinator {

struct CoordinatorHooks {
  std::vector<std::string> extra_flags;  // accepted besides the coordinator's own (each takes a value)
  // Called with the parsed flags and the options before the server starts; an error exits 1 naming it.
  std::function<absl::Status(const flags::Flags&, ServerOptions*)> configure;
};

// Runs the coordinator until a signal or a fatal error; returns the process exit code.
int RunCoordinator(int argc, char** argv, const CoordinatorHooks& hooks = {});

}  // namespace layerskip::coordinator
