// layerskip-loadgen: closed-loop load on a layerskip-coordinator. For each concurrency level, that many
// client threads each send Generate streams back to back (random prompt ids, ignore_eos, fixed max_tokens)
// and the tool reports generated-token throughput and client-side TTFT / inter-token latency percentiles.
// Each failed request is reported on stderr with its status and message, and counted in the table.
//   layerskip-loadgen --server HOST:PORT [--concurrency 1,4,16,64] [--requests-per-stream 4] [--max-tokens 64]
//                     [--prompt-tokens 16] [--mode autoregressive|self-speculative] [--exit-layer E|auto]
//                     [--speculations D|auto] [--auth-token T | --auth-token-file F] [--tls-ca PEM]
//   soak (bench/soak.sh): --duration SECONDS [--concurrency N] [--cancel-fraction F] [--deadline-fraction F]
//                     [--hang-seconds S]: random cancels and deadlines, outcomes by status code (soak_load.h)
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "bench/soak_load.h"
#include "flags/flags.h"
#include "flags/token_file.h"
#include "layerskip/v1/inference.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using layerskip::flags::Flags;
namespace v1 = layerskip::v1;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

struct Level {
  int concurrency = 0;
  double seconds = 0;
  int64_t tokens = 0, requests = 0, errors = 0;
  std::vector<double> ttft, itl;
};

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                                 "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

Level RunLevel(const std::string& server, const std::shared_ptr<grpc::ChannelCredentials>& creds,
               const v1::GenerateRequest& base, int concurrency, int per_stream, int prompt_tokens, int vocab,
               const std::string& token) {
  Level level;
  level.concurrency = concurrency;
  std::mutex mu;
  auto channel = grpc::CreateChannel(server, creds);
  auto stub = v1::Inference::NewStub(channel);
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      std::vector<double> ttft, itl;
      int64_t tokens = 0, errors = 0;
      for (int r = 0; r < per_stream; ++r) {
        v1::GenerateRequest q = base;
        for (int i = 0; i < prompt_tokens; ++i) q.add_prompt_ids(static_cast<int>(rng() % static_cast<unsigned>(vocab)));
        grpc::ClientContext ctx;
        if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
        const Clock::time_point sent = Clock::now();
        Clock::time_point last = sent;
        bool first = true;
        auto reader = stub->Generate(&ctx, q);
        v1::GenerateResponse m;
        while (reader->Read(&m)) {
          const int n = m.token_ids_size();
          if (n == 0) continue;
          const Clock::time_point now = Clock::now();
          const double dt = std::chrono::duration<double>(now - last).count();
          if (first) {
            ttft.push_back(dt);
            for (int i = 1; i < n; ++i) itl.push_back(0.0);
            first = false;
          } else {
            for (int i = 0; i < n; ++i) itl.push_back(dt / n);
          }
          last = now;
          tokens += n;
        }
        const grpc::Status st = reader->Finish();
        if (!st.ok()) {
          ++errors;
          std::lock_guard<std::mutex> l(mu);
          std::fprintf(stderr, "layerskip-loadgen: request failed (%d streams, stream %d, request %d): %s: %s\n",
                       concurrency, t, r, CodeName(st.error_code()), st.error_message().c_str());
        }
      }
      std::lock_guard<std::mutex> l(mu);
      level.ttft.insert(level.ttft.end(), ttft.begin(), ttft.end());
      level.itl.insert(level.itl.end(), itl.begin(), itl.end());
      level.tokens += tokens;
      level.errors += errors;
      level.requests += per_stream;
    });
  }
  for (auto& t : threads) t.join();
  level.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return level;
}

void Usage() {
  std::printf(
      "usage: layerskip-loadgen --server HOST:PORT [flags]\n"
      "Closed-loop load on layerskip-coordinator: per concurrency level, that many streams send Generate\n"
      "requests back to back; prints tokens/s and TTFT / inter-token latency percentiles per level, and the\n"
      "status and message of every failed request on stderr.\n"
      "  --concurrency 1,4,16,64       levels (streams)\n"
      "  --requests-per-stream N       requests each stream sends per level (default 4)\n"
      "  --max-tokens N                generated tokens per request (ignore_eos; default 64)\n"
      "  --prompt-tokens N             random prompt ids per request (default 16)\n"
      "  --mode autoregressive|self-speculative  --exit-layer E|auto  --speculations D|auto\n"
      "  --auth-token T | --auth-token-file F   sent as `authorization: Bearer T`\n"
      "  --tls-ca PEM                  TLS, trusting these roots\n"
      "soak mode (bench/soak.sh): --duration SECONDS [--concurrency N] [--cancel-fraction F]\n"
      "  [--deadline-fraction F] [--hang-seconds S]: random cancels and deadlines, outcomes by status code\n");
}

int Main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      Usage();
      return 0;
    }
  auto flags = Flags::Parse(argc, argv, 1,
                            {"server", "concurrency", "requests-per-stream", "max-tokens", "prompt-tokens", "mode",
                             "exit-layer", "speculations", "auth-token", "auth-token-file", "tls-ca", "duration",
                             "cancel-fraction", "deadline-fraction", "hang-seconds"});
  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "layerskip-loadgen: %s\n", m.c_str());
    return 1;
  };
  if (!flags.ok()) return fail(std::string(flags.status().message()));
  if (!flags->Has("server")) return fail("--server HOST:PORT is required");
  if (flags->Has("auth-token") && flags->Has("auth-token-file")) return fail("give --auth-token or --auth-token-file, not both");
  std::string token = flags->Get("auth-token");
  if (flags->Has("auth-token-file")) {  // read like every token file (flags/token_file.h)
    absl::StatusOr<std::string> read = layerskip::flags::ReadTokenFile(flags->Get("auth-token-file"), "--auth-token-file");
    if (!read.ok()) return fail(std::string(read.status().message()));
    token = *read;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (flags->Has("tls-ca")) {
    std::ifstream in(flags->Get("tls-ca"));
    if (!in) return fail("--tls-ca: cannot read '" + flags->Get("tls-ca") + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ss.str();
    creds = grpc::SslCredentials(ssl);
  }
  auto levels = layerskip::flags::ParseIntList(flags->Get("concurrency", "1,4,16,64"), "--concurrency");
  auto per_stream = flags->GetInt("requests-per-stream", 4);
  auto max_tokens = flags->GetInt("max-tokens", 64);
  auto prompt_tokens = flags->GetInt("prompt-tokens", 16);
  if (!levels.ok() || !per_stream.ok() || !max_tokens.ok() || !prompt_tokens.ok()) return fail("bad numeric flag");
  const std::string server = flags->Get("server");

  // The model's vocabulary bounds the random prompts.
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(server, creds));
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ModelInfo info;
  grpc::Status st = stub->GetModelInfo(&ctx, {}, &info);
  if (!st.ok()) return fail("GetModelInfo: " + st.error_message());

  v1::GenerateRequest base;
  base.set_max_tokens(static_cast<int>(*max_tokens));
  base.set_ignore_eos(true);
  const std::string mode = flags->Get("mode", "autoregressive");
  if (mode == "self-speculative") {
    base.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
    if (flags->Get("exit-layer") == "auto") {
      base.set_auto_exit_layer(true);  // the server's policy chooses E per batch
    } else {
      auto e = flags->GetInt("exit-layer", std::max(1, info.num_layers() / 2));
      if (!e.ok()) return fail("--exit-layer");
      base.set_exit_layer(static_cast<int>(*e));
    }
    const std::string d = flags->Get("speculations", "4");
    if (d == "auto") base.set_auto_speculations(true);
    else base.set_speculations(std::atoi(d.c_str()));
  } else if (mode == "autoregressive") {
    base.set_mode(v1::DECODE_MODE_AUTOREGRESSIVE);
  } else {
    return fail("--mode: unknown mode '" + mode + "'");
  }

  if (flags->Has("duration")) {
    layerskip::bench::SoakOptions so;
    so.server = server;
    so.credentials = creds;
    so.auth_token = token;
    so.concurrency = levels->empty() ? 8 : levels->front();
    so.max_tokens = static_cast<int>(*max_tokens);
    so.prompt_tokens = static_cast<int>(*prompt_tokens);
    so.vocab = info.vocab_size();
    auto seconds = flags->GetDouble("duration", 60);
    auto cancel = flags->GetDouble("cancel-fraction", 0.1);
    auto deadline = flags->GetDouble("deadline-fraction", 0.1);
    auto hang = flags->GetDouble("hang-seconds", 120);
    if (!seconds.ok() || !cancel.ok() || !deadline.ok() || !hang.ok()) return fail("bad numeric flag");
    so.seconds = *seconds;
    so.cancel_fraction = *cancel;
    so.deadline_fraction = *deadline;
    so.hang_seconds = *hang;
    if (so.max_tokens < 1 || so.prompt_tokens < 1 || so.concurrency < 1) return fail("--max-tokens, --prompt-tokens, --concurrency must be >= 1");
    return layerskip::bench::RunSoak(so, base);
  }
  std::printf("model %s (%d layers), mode %s, %lld prompt + %lld generated tokens per request, %lld requests per stream\n",
              info.model_name().c_str(), info.num_layers(), mode.c_str(), static_cast<long long>(*prompt_tokens),
              static_cast<long long>(*max_tokens), static_cast<long long>(*per_stream));
  std::printf("| streams | tokens/s | vs 1 stream | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p90 ms | ITL p99 ms | errors |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  double base_tps = 0;
  for (int c : *levels) {
    Level l = RunLevel(server, creds, base, c, static_cast<int>(*per_stream), static_cast<int>(*prompt_tokens),
                       info.vocab_size(), token);
    const double tps = l.seconds > 0 ? static_cast<double>(l.tokens) / l.seconds : 0;
    if (base_tps == 0) base_tps = tps;
    std::printf("| %d | %.0f | %.2fx | %.1f | %.1f | %.2f | %.2f | %.2f | %lld |\n", c, tps, base_tps > 0 ? tps / base_tps : 0,
                1e3 * Percentile(l.ttft, 50), 1e3 * Percentile(l.ttft, 99), 1e3 * Percentile(l.itl, 50),
                1e3 * Percentile(l.itl, 90), 1e3 * Percentile(l.itl, 99), static_cast<long long>(l.errors));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
