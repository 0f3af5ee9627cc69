#pragma once
// The coordinator process minus flags and signals: the model, the executor, the engine loop, the gRPC
// server (Inference + grpc.health.v1 + reflection), the OpenAI-compatible HTTP server (--http-port) and
// the /metrics + /health HTTP endpoint (--metrics-port), with the health state kept the same on all.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "coordinator/api/auth.h"
#include "coordinator/scheduling/engine_loop.h"
#include "coordinator/execution/executor_factory.h"
#include "coordinator/api/inference_service.h"
#include "engine/decode/cost_model_cache.h"
#include "coordinator/scheduling/metrics.h"
#include "coordinator/api/http/http_server.h"
#include "coordinator/api/http/openai_api.h"
#include "coordinator/api/validation.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip::coordinator {

struct ServerOptions {
  std::string model_dir;
  std::string model_name;  // metrics label and ModelInfo; default: the model directory's name
  ModelLoadOptions load;
  std::string listen = "127.0.0.1:50051";  // HOST:PORT; port 0 picks a free one
  int metrics_port = -1;                   // -1: no HTTP endpoint; 0: a free one
  int http_port = -1;                      // OpenAI-compatible HTTP API; -1: off; 0: a free one
  int http_threads = 2;                    // io threads of the HTTP servers
  bool metrics_tls = false;                // the metrics port serves HTTPS with --tls-cert/--tls-key
  std::string chat_template_file;          // overrides tokenizer_config.json's chat_template
  ExecutorOptions executor;
  EngineLoopOptions engine;
  DecodeOptions default_options;
  int default_max_tokens = 64;
  Calibration calibration = Calibration::kCached;  // the cost model behind auto_speculations
  std::string tls_cert_file, tls_key_file;  // both or neither
  std::string auth_token;
};

class Server {
 public:
  // Loads the model, starts every thread and marks health SERVING. Errors name the flag or file.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }
  // Warnings for the operator (a token over plaintext off loopback, an unusable chat template).
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Called (from the engine thread) after a fatal engine error; health is NOT_SERVING by then. The engine
  // may fail before the handler is set (a pipeline refused at start): then it is called at once, here.
  void SetFatalHandler(std::function<void(const absl::Status&)> f);

  // Graceful shutdown: NOT_SERVING, refuse new requests, let in-flight ones finish within `drain`, cancel
  // the rest, stop the gRPC server and every thread.
  void Shutdown(std::chrono::milliseconds drain);
  void SetServing(bool serving);

 private:
  Server() = default;

  ServerOptions options_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<EngineLoop> loop_;
  ServingDefaults defaults_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<http::OpenAiApi> openai_;
  std::unique_ptr<http::HttpServer> api_http_;
  std::unique_ptr<http::HttpServer> http_;  // --metrics-port
  std::vector<std::string> warnings_;
  std::atomic<bool> serving_{false};
  std::atomic<bool> logged_{false};  // the first SetServing logs even without a change
  std::mutex fatal_mu_;  // on_fatal_ and fatal_ (set from the engine thread, read from main)
  std::function<void(const absl::Status&)> on_fatal_;
  std::optional<absl::Status> fatal_;
  int port_ = 0, metrics_port_ = -1, http_port_ = -1;
  bool shut_down_ = false;
};

}  // namespace layerskip::coordinator
