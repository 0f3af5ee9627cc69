#include "coordinator/server.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip::coordinator {
namespace {

constexpr char kServiceName[] = "layerskip.v1.Inference";

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

v1::DecodeMode ModeProto(DecodeMode m) {
  return m == DecodeMode::kAutoregressive ? v1::DECODE_MODE_AUTOREGRESSIVE
         : m == DecodeMode::kEarlyExit    ? v1::DECODE_MODE_EARLY_EXIT
                                          : v1::DECODE_MODE_SELF_SPECULATIVE;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& o) {
  std::unique_ptr<Server> s(new Server());
  s->options_ = o;
  LS_ASSIGN_OR_RETURN(s->model_, LoadModelDir(o.model_dir, o.load));
  const LlamaConfig& config = s->model_->weights->config;
  const int L = config.num_hidden_layers;
  if (s->options_.default_options.exit_layer == 0) s->options_.default_options.exit_layer = std::max(1, L / 2);
  LS_RETURN_IF_ERROR(ValidateDecodeOptions(s->options_.default_options, L));
  LS_ASSIGN_OR_RETURN(s->executor_, MakeExecutor(s->model_.get(), o.executor));
  std::string name = o.model_name;
  if (name.empty()) name = std::filesystem::path(o.model_dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(o.model_dir).lexically_normal().parent_path().filename().string();
  s->metrics_ = std::make_unique<ServiceMetrics>(name);

  ServingDefaults& d = s->defaults_;
  d.num_layers = L;
  d.vocab_size = s->model_->model->vocab_size();
  d.context = s->executor_->context_length();
  d.tokenizer = s->model_->tokenizer.get();
  d.eos_ids = config.eos_token_ids;
  if (d.tokenizer)
    for (int id : d.tokenizer->eos_ids())
      if (std::find(d.eos_ids.begin(), d.eos_ids.end(), id) == d.eos_ids.end()) d.eos_ids.push_back(id);
  d.options = s->options_.default_options;
  d.max_tokens = o.default_max_tokens;

  s->loop_ = std::make_unique<EngineLoop>(s->executor_.get(), d.tokenizer, s->metrics_.get(), o.engine);
  Server* raw = s.get();
  s->loop_->SetFatalHandler([raw](const absl::Status& st) {
    raw->SetServing(false);
    std::lock_guard<std::mutex> l(raw->fatal_mu_);
    raw->fatal_ = st;
    if (raw->on_fatal_) raw->on_fatal_(st);
  });
  s->loop_->SetHealthHandler([raw](bool serving) { raw->SetServing(serving); });
  s->auth_ = std::make_unique<Authenticator>(o.auth_token);

  v1::ModelInfo info;
  info.set_model_name(name);
  info.set_num_layers(L);
  info.set_hidden_size(config.hidden_size);
  info.set_vocab_size(d.vocab_size);
  info.set_context_length(d.context);
  info.set_num_slots(s->executor_->num_slots());
  info.set_max_batch_size(o.engine.batch.max_batch_size);
  info.set_default_mode(ModeProto(d.options.mode));
  info.set_default_exit_layer(d.options.exit_layer);
  info.set_default_speculations(d.options.speculation.adaptive ? -1 : d.options.speculation.speculations);
  for (int id : d.eos_ids) info.add_eos_token_ids(id);
  info.set_dtype(o.load.type == WeightType::kBF16 ? "bf16" : "f32");
  info.set_speculation_batch_threshold(o.engine.batch.speculation_batch_threshold);
  s->service_ = std::make_unique<InferenceService>(s->loop_.get(), &s->defaults_, s->auth_.get(), std::move(info));

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!o.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    LS_ASSIGN_OR_RETURN(std::string cert, ReadFile(o.tls_cert_file, "--tls-cert"));
    LS_ASSIGN_OR_RETURN(std::string key, ReadFile(o.tls_key_file, "--tls-key"));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.listen, creds, &s->port_);
  builder.RegisterService(s->service_.get());
  s->loop_->Start();
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->port_ == 0) {
    s->loop_->Stop();
    s->loop_.reset();
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on '", o.listen, "'"));
  }
  if (o.metrics_port >= 0) {
    std::string host = o.listen.substr(0, o.listen.rfind(':'));
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    s->http_ = std::make_unique<MetricsHttpServer>([raw] { return raw->metrics_->registry().Render(); },
                                                   [raw] { return raw->serving_.load(); });
    absl::StatusOr<int> port = s->http_->Start(host, o.metrics_port);
    if (!port.ok()) {
      s->grpc_->Shutdown();
      s->loop_->Stop();
      s->loop_.reset();
      return port.status();
    }
    s->metrics_port_ = *port;
  }
  // A pipeline is wired in the background: NOT_SERVING until then (the engine loop flips it).
  s->SetServing(!s->loop_->degraded() && s->executor_->Liveness().ok());
  return s;
}

void Server::SetFatalHandler(std::function<void(const absl::Status&)> f) {
  std::lock_guard<std::mutex> l(fatal_mu_);
  on_fatal_ = std::move(f);
  if (fatal_ && on_fatal_) on_fatal_(*fatal_);
}

void Server::SetServing(bool serving) {
  // Transitions are logged: operators (and launch/local-cluster.sh) watch for "health SERVING".
  if (serving_.exchange(serving) != serving || !logged_) {
    logged_ = true;
    std::fprintf(stderr, "layerskip-coordinator: health %s\n", serving ? "SERVING" : "NOT_SERVING");
  }
  if (!grpc_) return;
  grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService();
  if (!health) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

void Server::Shutdown(std::chrono::milliseconds drain) {
  if (shut_down_ || !loop_) return;  // (never started: Start failed part-way)
  shut_down_ = true;
  SetServing(false);
  loop_->StopAccepting();
  if (!loop_->WaitIdle(drain)) loop_->CancelAll();
  // Every stream has its final message queued; give the writes a moment, then close what is left.
  grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  loop_->Stop();
  if (http_) http_->Stop();
}

Server::~Server() {
  if (!shut_down_) Shutdown(std::chrono::milliseconds(0));
}

}  // namespace layerskip::coordinator
