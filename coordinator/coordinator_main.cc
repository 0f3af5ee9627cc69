// layerskip-coordinator's process (coordinator_main.h): flags -> ServerOptions; SIGTERM / SIGINT drain and
// exit 0; a fatal engine error exits 1.
#include "coordinator/coordinator_main.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "flags/token_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "flags/flags.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/util/status.h"

namespace layerskip::coordinator {
namespace {

void Usage() {
  std::printf(
      "usage: layerskip-coordinator --model DIR [flags]\n"
      "Serves the model over gRPC (layerskip.v1.Inference), optionally an OpenAI-compatible HTTP API and a\n"
      "/metrics + /health HTTP endpoint.\n"
      "  --listen HOST:PORT            gRPC address (default 127.0.0.1:50051; port 0: a free one); the HTTP\n"
      "                                ports bind the same host\n"
      "  --http-port P                 OpenAI-compatible API: POST /v1/completions, /v1/chat/completions,\n"
      "                                GET /v1/models (+ /health, /metrics); off by default; 0: a free port\n"
      "  --chat-template FILE          Jinja chat template (default: tokenizer_config.json's chat_template)\n"
      "  --http-threads N              io threads per HTTP server (default 2)\n"
      "  --metrics-port P              GET /metrics (Prometheus) and GET /health (200 / 503); off by default\n"
      "  --metrics-tls                 serve the metrics port over HTTPS too (--tls-cert/--tls-key)\n"
      "  --model-name NAME             metrics label, ModelInfo and the OpenAI model id (default: the dir name)\n"
      "  --max-batch-size N --max-batched-tokens N --max-queue N --num-slots N --kv-cache-positions N\n"
      "  --max-context N --threads N --dtype auto|bf16|f32 (auto: the checkpoint's own) --weights int8\n"
      "  --device cpu|cuda|cuda:N        where the in-process engine computes (default cpu; not with --workers:\n"
      "                                each worker takes its own --device)\n"
      "  --gpu-memory-fraction F       a CUDA device: the share of its memory for weights, scratch and the KV\n"
      "                                cache (default 0.9); --kv-cache-positions N: positions all running\n"
      "                                sequences hold together (default slots x context)\n"
      "  --default-mode autoregressive|early-exit|self-speculative  --default-exit-layer E|auto\n"
      "  --default-speculations D|auto  --default-max-tokens N  --speculation-batch-threshold N\n"
      "  --calibration cached|fresh|off  the cost model behind automatic speculation: cached (default),\n"
      "                                measured anew, or off (a documented default model)\n"
      "  --tls-cert PEM --tls-key PEM  TLS for the gRPC and the OpenAI HTTP port\n"
      "  --auth-token T | --auth-token-file F   require `authorization: Bearer T` on gRPC and HTTP API calls\n"
      "  --drain-timeout SECONDS       SIGTERM: finish in-flight requests for this long (default 30)\n"
      "  --workers ADDR,... [--stages 0-3,4-11,12-15] [--cluster-token-file F] [--transport tcp|nccl|ipc]\n"
      "    [--workers-tls-ca PEM] [--restore-timeout SECONDS]  pipeline-parallel workers (TLS to their\n"
      "    control port when --workers-tls-ca is given); their liveness and timeouts (seconds):\n"
      "    --workers-wait S (300: wait this long for the workers at start, NOT_SERVING meanwhile)\n"
      "    --heartbeat-interval S (1) --heartbeat-misses N (3: a stage silent this long is NOT_SERVING)\n"
      "    --step-timeout-floor S (10: a step's deadline is at least this, else from measured step times)\n"
      "    --rpc-timeout S (60) --connect-timeout S (5) --load-timeout S (600)\n");
}

absl::StatusOr<int> IntFlag(const flags::Flags& f, const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  LS_ASSIGN_OR_RETURN(int64_t v, f.GetInt(name, fallback));
  if (v < lo || v > hi) return absl::InvalidArgumentError(absl::StrCat("--", name, " must be in [", lo, ", ", hi, "]"));
  return static_cast<int>(v);
}

// A duration flag in seconds within [lo, hi].
absl::StatusOr<absl::Duration> SecondsFlag(const flags::Flags& f, const char* name, double fallback, double lo, double hi) {
  LS_ASSIGN_OR_RETURN(double v, f.GetDouble(name, fallback));
  if (!(v >= lo && v <= hi)) return absl::InvalidArgumentError(absl::StrCat("--", name, " must be in [", lo, ", ", hi, "] seconds"));
  return absl::Seconds(v);
}

// The pipeline's timeouts and liveness (docs/pipeline.md, "Liveness and timeouts").
absl::Status PipelineTimeoutsFromFlags(const flags::Flags& f, ExecutorOptions* e) {
  LS_ASSIGN_OR_RETURN(e->rpc_timeout, SecondsFlag(f, "rpc-timeout", 60, 0.1, 86400));
  LS_ASSIGN_OR_RETURN(e->step_timeout_floor, SecondsFlag(f, "step-timeout-floor", 10, 0.01, 86400));
  LS_ASSIGN_OR_RETURN(e->connect_timeout, SecondsFlag(f, "connect-timeout", 5, 0.01, 3600));
  LS_ASSIGN_OR_RETURN(e->load_timeout, SecondsFlag(f, "load-timeout", 600, 1, 86400));
  LS_ASSIGN_OR_RETURN(e->heartbeat_interval, SecondsFlag(f, "heartbeat-interval", 1, 0.01, 3600));
  LS_ASSIGN_OR_RETURN(e->heartbeat_misses, IntFlag(f, "heartbeat-misses", 3, 1, 1000));
  LS_ASSIGN_OR_RETURN(e->workers_wait, SecondsFlag(f, "workers-wait", 300, 0, 86400));
  return absl::OkStatus();
}

absl::StatusOr<ServerOptions> OptionsFromFlags(const flags::Flags& f) {
  ServerOptions o;
  if (!f.Has("model")) return absl::InvalidArgumentError("--model DIR is required");
  o.model_dir = f.Get("model");
  o.model_name = f.Get("model-name");
  LS_ASSIGN_OR_RETURN(o.load, cli::LoadOptionsFromFlags(f));
  o.load.require_tokenizer = false;
  o.listen = f.Get("listen", "127.0.0.1:50051");
  if (o.listen.rfind(':') == std::string::npos) return absl::InvalidArgumentError("--listen must be HOST:PORT");
  LS_ASSIGN_OR_RETURN(o.metrics_port, IntFlag(f, "metrics-port", -1, -1, 65535));
  LS_ASSIGN_OR_RETURN(o.http_port, IntFlag(f, "http-port", -1, -1, 65535));
  LS_ASSIGN_OR_RETURN(o.http_threads, IntFlag(f, "http-threads", 2, 1, 256));
  o.chat_template_file = f.Get("chat-template");
  o.metrics_tls = f.Has("metrics-tls");
  LS_ASSIGN_OR_RETURN(o.engine.batch.max_batch_size, IntFlag(f, "max-batch-size", 32, 1, 4096));
  LS_ASSIGN_OR_RETURN(o.engine.batch.max_batched_tokens, IntFlag(f, "max-batched-tokens", 4096, 1, 1 << 24));
  LS_ASSIGN_OR_RETURN(o.engine.batch.speculation_batch_threshold, IntFlag(f, "speculation-batch-threshold", 16, 0, 1 << 20));
  LS_ASSIGN_OR_RETURN(o.engine.max_queue, IntFlag(f, "max-queue", 256, 0, 1 << 20));
  LS_ASSIGN_OR_RETURN(int64_t kv, f.GetInt("kv-cache-positions", 0));
  if (kv < 0) return absl::InvalidArgumentError("--kv-cache-positions must be >= 0");
  o.engine.kv_positions = kv;
  LS_ASSIGN_OR_RETURN(double restore, f.GetDouble("restore-timeout", 30.0));
  if (!(restore >= 0.0 && restore <= 86400.0)) return absl::InvalidArgumentError("--restore-timeout must be in [0, 86400] seconds");
  o.engine.restore_timeout = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(restore));
  LS_ASSIGN_OR_RETURN(o.executor.num_slots, IntFlag(f, "num-slots", o.engine.batch.max_batch_size, 1, 4096));
  o.executor.workers = f.Get("workers");
  o.executor.model_dir = o.model_dir;  // pipeline (--workers): stage plan, cluster token, transport
  o.executor.stages = f.Get("stages");
  o.executor.transport = f.Get("transport", "tcp");
  o.executor.tls_ca_file = f.Get("workers-tls-ca");
  o.executor.dtype = o.load.type == WeightType::kF32 ? "f32" : "bf16";
  o.executor.weights = o.load.int8_layers ? "int8" : "";
  o.executor.max_context = o.load.max_context;
  o.executor.kv_positions = o.load.kv_positions;  // a device backend sizes its cache from these
  o.executor.gpu_memory_fraction = o.load.gpu_memory_fraction;
  if (f.Has("cluster-token-file")) {  // read exactly as the workers read it (flags/token_file.h)
    LS_ASSIGN_OR_RETURN(o.executor.cluster_token, flags::ReadTokenFile(f.Get("cluster-token-file"), "--cluster-token-file"));
  } else if (const char* env = std::getenv("LAYERSKIP_CLUSTER_TOKEN")) {
    o.executor.cluster_token = env;
  }
  LS_RETURN_IF_ERROR(PipelineTimeoutsFromFlags(f, &o.executor));
  LS_ASSIGN_OR_RETURN(o.default_max_tokens, IntFlag(f, "default-max-tokens", 64, 1, 1 << 24));

  // Default decoding options, spelled like `layerskip generate`'s flags.
  std::string mode = f.Get("default-mode", "autoregressive");
  DecodeOptions& d = o.default_options;
  if (mode == "autoregressive") d.mode = DecodeMode::kAutoregressive;
  else if (mode == "early-exit") d.mode = DecodeMode::kEarlyExit;
  else if (mode == "self-speculative") d.mode = DecodeMode::kSelfSpeculative;
  else return absl::InvalidArgumentError(absl::StrCat("--default-mode: unknown mode '", mode, "'"));
  if (f.Get("default-exit-layer") == "auto") {  // the policy chooses E (a pipeline's split still fixes it)
    d.auto_exit_layer = true;
    d.exit_layer = 0;  // half the layers: the automatic stage plan's split
  } else {
    LS_ASSIGN_OR_RETURN(d.exit_layer, IntFlag(f, "default-exit-layer", 0, 0, 1 << 16));  // 0: half the layers
  }
  o.executor.exit_layer = d.exit_layer;  // the automatic stage plan's first stage ends at E
  const std::string spec = f.Get("default-speculations", "4");
  if (spec == "auto") {
    d.auto_speculations = true;
    d.speculation.speculations = 4;
  } else {
    LS_ASSIGN_OR_RETURN(d.speculation.speculations, IntFlag(f, "default-speculations", 4, 0, 64));
  }

  if (f.Has("auth-token") && f.Has("auth-token-file"))
    return absl::InvalidArgumentError("give --auth-token or --auth-token-file, not both");
  o.auth_token = f.Get("auth-token");
  if (f.Has("auth-token-file")) {  // read like every token file (flags/token_file.h)
    LS_ASSIGN_OR_RETURN(o.auth_token, flags::ReadTokenFile(f.Get("auth-token-file"), "--auth-token-file"));
  }
  LS_ASSIGN_OR_RETURN(o.calibration, ParseCalibration(f.Get("calibration", "cached")));
  o.tls_cert_file = f.Get("tls-cert");
  o.tls_key_file = f.Get("tls-key");
  absl::StatusOr<DeviceSpec> device = DeviceSpec::Parse(f.Get("device", "cpu"));
  if (!device.ok()) return absl::InvalidArgumentError(absl::StrCat("--", device.status().message()));
  o.executor.device = *device;
  if (!o.executor.device.is_cpu() && !o.executor.workers.empty())
    return absl::InvalidArgumentError("--device: a pipeline coordinator (--workers) computes nothing; give each worker its --device");
  LS_RETURN_IF_ERROR(CheckDevice(o.executor.device));  // before any weights are read
  return o;
}

}  // namespace

int RunCoordinator(int argc, char** argv, const CoordinatorHooks& hooks) {
  // This process links libprotobuf (gRPC): sentencepiece's bundled protobuf would abort it.
  DisableSentencePiece(
      "sentencepiece tokenizers are not supported by layerskip-coordinator (Debian's libsentencepiece bundles a "
      "protobuf that clashes with gRPC's); give the model a tokenizer.json (transformers writes one with "
      "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))");
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    Usage();
    return 0;
  }
  std::set<std::string> names = {"model", "model-name", "listen", "metrics-port", "http-port", "http-threads", "chat-template", "max-batch-size", "max-batched-tokens", "max-queue", "num-slots",
       "kv-cache-positions", "gpu-memory-fraction", "max-context", "threads", "dtype", "weights", "default-mode", "default-exit-layer",
       "default-speculations", "default-max-tokens", "speculation-batch-threshold", "tls-cert", "tls-key", "auth-token",
       "auth-token-file", "drain-timeout", "workers", "stages", "cluster-token-file", "workers-tls-ca", "transport", "fatal-linger", "restore-timeout",
       "calibration", "workers-wait", "heartbeat-interval", "heartbeat-misses", "step-timeout-floor", "rpc-timeout",
       "connect-timeout", "load-timeout", "device"};
  names.insert(hooks.extra_flags.begin(), hooks.extra_flags.end());
  auto flags = ::layerskip::flags::Flags::Parse(argc, argv, 1, names, /*booleans=*/{"metrics-tls"});
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "layerskip-coordinator: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  if (!flags.ok()) return fail(flags.status());
  absl::StatusOr<ServerOptions> options = OptionsFromFlags(*flags);
  if (!options.ok()) return fail(options.status());
  if (hooks.configure) {
    if (absl::Status s = hooks.configure(*flags, &*options); !s.ok()) return fail(s);
  }
  absl::StatusOr<double> drain = flags->GetDouble("drain-timeout", 30.0);
  if (!drain.ok()) return fail(drain.status());
  absl::StatusOr<double> linger = flags->GetDouble("fatal-linger", 1.0);
  if (!linger.ok()) return fail(linger.status());

  // Signals are taken by this thread only (sigtimedwait), so block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<Server>> server_or = Server::Start(*options);
  if (!server_or.ok()) return fail(server_or.status());
  Server& server = **server_or;

  std::atomic<bool> fatal{false};
  std::mutex fatal_mu;
  std::string fatal_message;
  server.SetFatalHandler([&](const absl::Status& s) {
    {
      std::lock_guard<std::mutex> l(fatal_mu);
      fatal_message = std::string(s.message());
    }
    fatal = true;
  });
  std::printf("layerskip-coordinator: listening on %s (port %d)\n", options->listen.c_str(), server.port());
  if (server.http_port() >= 0) std::printf("layerskip-coordinator: http on port %d\n", server.http_port());
  if (server.metrics_port() >= 0) std::printf("layerskip-coordinator: metrics on port %d\n", server.metrics_port());
  for (const std::string& w : server.warnings()) std::fprintf(stderr, "layerskip-coordinator: warning: %s\n", w.c_str());
  if (!options->executor.workers.empty())
    std::printf("layerskip-coordinator: wiring the workers (up to --workers-wait %.0f s; health NOT_SERVING until wired)\n",
                absl::ToDoubleSeconds(options->executor.workers_wait));
  std::printf("layerskip-coordinator: serving\n");
  std::fflush(stdout);

  const timespec tick{0, 100 * 1000 * 1000};
  for (;;) {
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (fatal) {
      {
        std::lock_guard<std::mutex> l(fatal_mu);
        std::fprintf(stderr, "layerskip-coordinator: fatal engine error: %s\n", fatal_message.c_str());
      }
      // Health already says NOT_SERVING; keep answering probes for a moment so they see it, then exit 1.
      std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, *linger)));
      server.Shutdown(std::chrono::milliseconds(0));
      return 1;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      std::fprintf(stderr, "layerskip-coordinator: %s: draining (up to %.1f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", *drain);
      server.Shutdown(std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, *drain) * 1000)));
      std::fprintf(stderr, "layerskip-coordinator: stopped\n");
      return 0;
    }
  }
}

}  // namespace layerskip::coordinator
