// layerskip: generate, inspect and bench on Hugging Face Llama checkpoints.
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <string>

#include <unistd.h>

#include "cli/commands.h"

namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: layerskip <command> [flags]\n"
               "  generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N] [--temperature T]\n"
               "           [--top-k K] [--top-p P] [--seed S] [--mode autoregressive|early-exit|self-speculative]\n"
               "           [--exit-layer E|auto] [--speculations D|auto|adaptive] [--max-speculations N]\n"
               "           [--calibration cached|fresh|off] [--draft-vocab K [--draft-vocab-corpus FILE]]\n"
               "           [--stop TEXT]... [--ignore-eos] [--json] [--dtype auto|bf16|f32] [--weights int8] [--no-mmap] [--threads N]\n"
               "           [--max-context N] [--kv-cache-positions N] [--gpu-memory-fraction F] [--device cpu|cuda|cuda:N]\n"
               "  inspect  --model DIR [--num-slots N] [--max-context N] [--kv-cache-positions N] [--dtype D] [--weights int8] [--no-mmap]\n"
               "           (config, KV cache size, then a timed load: peak RSS)\n"
               "  logits   --model DIR --prompt-ids 1,2,3 [--exit-layers all|1,4,8] [--dtype auto|bf16|f32] [--weights int8] [--no-mmap] [--device D]  (JSON)\n"
               "  bench    (--model DIR | --random llama3.2-1b|llama3-8b|tiny) [--mode autoregressive|self-speculative]\n"
               "           [--prompt-tokens N] [--decode-tokens N] [--warmup N] [--exit-layers A-B] [--speculations 1,2,4] [--repeats N]\n"
               "           [--prompts N] [--auto] [--draft-vocab K] [--zero-layers-from E] [--threads N] [--dtype auto|bf16|f32]\n"
               "           [--weights int8] [--no-mmap] [--kv-cache-positions N] [--gpu-memory-fraction F] [--device cpu|cuda|cuda:N]\n"
               "  client   --server HOST:PORT (--prompt TEXT | --prompt-ids 1,2,3) [generate's sampling and speculation flags]\n"
               "           [--stop TEXT]... [--auth-token T] [--tls-ca PEM] [--timeout SECONDS] [--json]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    Usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char* cmd = argv[1];
  // `layerskip COMMAND --help`: the usage (the client's own comes from layerskip-client).
  for (int i = 2; i < argc && std::strcmp(cmd, "client") != 0; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      Usage(stdout);
      return 0;
    }
  if (!std::strcmp(cmd, "generate")) return layerskip::cli::RunGenerate(argc, argv);
  if (!std::strcmp(cmd, "inspect")) return layerskip::cli::RunInspect(argc, argv);
  if (!std::strcmp(cmd, "bench")) return layerskip::cli::RunBench(argc, argv);
  if (!std::strcmp(cmd, "logits")) return layerskip::cli::RunLogits(argc, argv);
  if (!std::strcmp(cmd, "client")) {  // the gRPC client is its own binary beside this one
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string path = n > 0 ? std::string(self, n) : std::string(argv[0]);
    path = path.substr(0, path.find_last_of('/') + 1) + "layerskip-client";
    execv(path.c_str(), argv);
    std::fprintf(stderr, "layerskip client: cannot run %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  std::fprintf(stderr, "layerskip: unknown command '%s'\n", cmd);
  Usage(stderr);
  return 2;
}
