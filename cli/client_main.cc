// layerskip-client: streams a completion from layerskip-coordinator (`layerskip client` runs this binary).
//   layerskip-client [client] --server HOST:PORT (--prompt TEXT | --prompt-ids 1,2,3) [...]
#include <cstdio>
#include <cstring>
#include <vector>

#include "cli/commands.h"

namespace {

void Usage() {
  std::printf(
      "usage: layerskip-client [client] --server HOST:PORT (--prompt TEXT | --prompt-ids 1,2,3) [flags]\n"
      "Streams one completion from layerskip-coordinator (gRPC) and prints the text as it arrives.\n"
      "  --max-tokens N --temperature T --top-k K --top-p P --seed S   sampling (unset: the server's defaults)\n"
      "  --mode autoregressive|early-exit|self-speculative --exit-layer E --speculations D|auto\n"
      "  --stop TEXT (repeatable) --ignore-eos\n"
      "  --auth-token T                sent as `authorization: Bearer T`\n"
      "  --tls-ca PEM                  TLS, trusting these roots\n"
      "  --timeout SECONDS             the call's deadline\n"
      "  --json                        one JSON object (ids, text, finish reason, usage, speculation)\n");
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      Usage();
      return 0;
    }
  if (argc >= 2 && std::strcmp(argv[1], "client") == 0) return layerskip::cli::RunClient(argc, argv);
  // Called directly: the flags start at argv[1]; RunClient reads them from argv[2].
  std::vector<char*> args(argv, argv + argc);
  static char client[] = "client";
  args.insert(args.begin() + 1, client);
  return layerskip::cli::RunClient(static_cast<int>(args.size()), args.data());
}
