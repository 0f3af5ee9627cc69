// layerskip-client: streams a completion from layerskip-coordinator (`layerskip client` runs this binary).
//   layerskip-client [client] --server HOST:PORT (--prompt TEXT | --prompt-ids 1,2,3) [...]
#include <cstring>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "client") == 0) return layerskip::cli::RunClient(argc, argv);
  // Called directly: the flags start at argv[1]; RunClient reads them from argv[2].
  std::vector<char*> args(argv, argv + argc);
  static char client[] = "client";
  args.insert(args.begin() + 1, client);
  return layerskip::cli::RunClient(static_cast<int>(args.size()), args.data());
}
