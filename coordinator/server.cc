#include "coordinator/server.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "engine/decode/cost_calibration.h"
#include "engine/runtime/kv_budget.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/util/status.h"
#include "kernels/cpu_features.h"

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

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// The chat template (--chat-template FILE, else tokenizer_config.json's) and the special tokens' text. A
// --chat-template that does not parse is an error; a checkpoint's own is a warning, and the chat route
// answers 400 with the reason.
absl::Status LoadChatTemplate(const ServerOptions& o, http::OpenAiApiConfig& api, std::vector<std::string>& warnings) {
  LS_ASSIGN_OR_RETURN(chat::ChatTemplateConfig config, chat::ReadChatTemplateConfig(o.model_dir));
  api.bos_token = config.bos_token;
  api.eos_token = config.eos_token;
  if (!o.chat_template_file.empty()) {
    LS_ASSIGN_OR_RETURN(config.source, ReadFile(o.chat_template_file, "--chat-template"));
    absl::StatusOr<std::shared_ptr<const chat::ChatTemplate>> t = chat::ChatTemplate::Parse(config.source);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat("--chat-template: ", t.status().message()));
    api.chat_template = *t;
    return absl::OkStatus();
  }
  if (config.source.empty()) return absl::OkStatus();
  absl::StatusOr<std::shared_ptr<const chat::ChatTemplate>> t = chat::ChatTemplate::Parse(config.source);
  if (t.ok()) {
    api.chat_template = *t;
  } else {
    api.chat_template_error = absl::StrCat("the model's chat template cannot be used: ", t.status().message(),
                                           " (give a template with --chat-template FILE)");
    warnings.push_back(api.chat_template_error);
  }
  return absl::OkStatus();
}

// The documented default cost model (DefaultCostModel: weight bytes over 20 GB/s, +10% per extra row, prior
// acceptance E/L) from the shapes alone, for a pipeline's coordinator, which holds no weights to size or time.
CostModel ShapeCostModel(const LlamaConfig& c, WeightType type) {
  const double bytes = type == WeightType::kF32 ? 4.0 : 2.0, D = c.hidden_size;
  const double layer_bytes = bytes * D * (2.0 * c.q_dim() + 2.0 * c.kv_dim() + 3.0 * c.intermediate_size);
  const double head_bytes = bytes * D * c.vocab_size;
  CostModel m = DefaultCostModel(c.num_hidden_layers, layer_bytes, head_bytes, head_bytes);
  m.source = "default (from the shapes: a pipeline's coordinator holds no weights)";
  return m;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& o) {
  std::unique_ptr<Server> s(new Server());
  s->options_ = o;
  // A pipeline's coordinator (--workers) computes nothing: config.json and the tokenizer only, no weights.
  const bool pipeline = !o.executor.workers.empty();
  if (pipeline) {
    LS_ASSIGN_OR_RETURN(s->model_, LoadModelConfigAndTokenizer(o.model_dir, o.load));
  } else {
    LS_ASSIGN_OR_RETURN(s->model_, LoadModelDir(o.model_dir, o.load));
  }
  const LlamaConfig& config = s->model_->config;
  const int L = config.num_hidden_layers;
  if (s->options_.default_options.exit_layer == 0) s->options_.default_options.exit_layer = std::max(1, L / 2);
  // The cost model behind auto_speculations: measured on this process's copy of the model (--calibration off:
  // the documented default); on a GPU (--device cuda:N) on that GPU, with a one-slot scratch backend freed
  // before the serving one is made; a pipeline has no copy here: the default, from the shapes.
  CostModel cost;
  if (pipeline) {
    cost = ShapeCostModel(config, o.load.type);
  } else {
    CostModelRequest cost_request;
    cost_request.calibration = o.calibration;
    cost_request.model_id = std::filesystem::absolute(o.model_dir).string();
    cost_request.probe_tokens = DefaultProbeTokens(s->model_->tokenizer.get(), config.vocab_size);
    std::unique_ptr<Backend> scratch;
    if (!o.executor.device.is_cpu()) {
      cost_request.device = o.executor.device.ToString();
      if (o.calibration != Calibration::kOff) {
        LS_ASSIGN_OR_RETURN(scratch, CreateBackend(*s->model_, o.executor.device, 1));
      }
    }
    LS_ASSIGN_OR_RETURN(cost, ObtainCostModel(*s->model_->model, cost_request, scratch.get()));
  }
  s->options_.default_options.cost = std::make_shared<const CostModel>(std::move(cost));
  LS_RETURN_IF_ERROR(ValidateDecodeOptions(s->options_.default_options, L));
  LS_ASSIGN_OR_RETURN(s->executor_, MakeExecutor(s->model_.get(), o.executor));
  std::string name = o.model_name;
  if (name.empty()) name = std::filesystem::path(o.model_dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(o.model_dir).lexically_normal().parent_path().filename().string();
  s->metrics_ = std::make_unique<ServiceMetrics>(name);

  ServingDefaults& d = s->defaults_;
  d.num_layers = L;
  d.vocab_size = s->model_->model ? s->model_->model->vocab_size() : config.vocab_size;
  d.context = s->executor_->context_length();
  d.tokenizer = s->model_->tokenizer.get();
  d.eos_ids = config.eos_token_ids;
  if (d.tokenizer)
    for (int id : d.tokenizer->eos_ids())
      if (std::find(d.eos_ids.begin(), d.eos_ids.end(), id) == d.eos_ids.end()) d.eos_ids.push_back(id);
  d.options = s->options_.default_options;
  d.fixed_exit_layer = s->executor_->fixed_exit_layer();  // a pipeline: auto E is its split's E
  if (d.options.auto_exit_layer && d.fixed_exit_layer > 0) {
    d.options.exit_layer = d.fixed_exit_layer;
    d.options.auto_exit_layer = false;
  }
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
  info.set_default_auto_exit_layer(d.options.auto_exit_layer);
  info.set_default_speculations(d.options.speculation.adaptive || d.options.auto_speculations
                                    ? -1 : d.options.speculation.speculations);
  for (int id : d.eos_ids) info.add_eos_token_ids(id);
  info.set_dtype(o.load.type == WeightType::kBF16 ? "bf16" : "f32");
  info.set_weights(o.load.int8_layers ? "int8" : info.dtype());
  info.set_speculation_batch_threshold(o.engine.batch.speculation_batch_threshold);
  info.set_device(o.executor.workers.empty() ? o.executor.device.ToString() : "");
  // The KV cache: the host engine's (every slot the whole context, f32 K and V; a pipeline's workers hold
  // the same, split by layers); the admission budget is --kv-cache-positions or slots x context.
  KvBudgetRequest kv;
  kv.num_slots = s->executor_->num_slots();
  kv.context = d.context;
  kv.bytes_per_position = int64_t{2} * L * config.kv_dim() * static_cast<int64_t>(sizeof(float));
  kv.kv_positions = o.engine.kv_positions;
  kv.full_context_slots = true;
  LS_ASSIGN_OR_RETURN(KvBudget kv_budget, PlanKvBudget(kv));
  info.set_kv_cache_positions(kv_budget.total_positions);
  info.set_kv_cache_bytes(kv_budget.bytes);
  info.set_cpu_kernels(cpu::CpuKernelPairName(cpu::ActiveCpuKernelPair()));
  s->service_ = std::make_unique<InferenceService>(s->loop_.get(), &s->defaults_, s->auth_.get(), std::move(info));

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  std::string cert_pem, key_pem;
  if (!o.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    LS_ASSIGN_OR_RETURN(cert_pem, ReadFile(o.tls_cert_file, "--tls-cert"));
    LS_ASSIGN_OR_RETURN(key_pem, ReadFile(o.tls_key_file, "--tls-key"));
    ssl.pem_key_cert_pairs.push_back({key_pem, cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  std::string host = o.listen.substr(0, o.listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (!o.auth_token.empty() && o.tls_cert_file.empty() && !IsLoopback(host))
    s->warnings_.push_back(absl::StrCat("a bearer token is required but --listen ", o.listen,
                                        " is not loopback and there is no TLS (--tls-cert/--tls-key): the token "
                                        "crosses the network in plaintext"));

  // The OpenAI-compatible API: the same engine loop, defaults and token as gRPC.
  http::OpenAiApiConfig api;
  api.model_name = name;
  api.render_metrics = [raw] { return raw->metrics_->registry().Render(); };
  api.serving = [raw] { return raw->serving_.load(); };
  if (o.http_port >= 0) LS_RETURN_IF_ERROR(LoadChatTemplate(o, api, s->warnings_));
  s->openai_ = std::make_unique<http::OpenAiApi>(s->loop_.get(), &s->defaults_, s->auth_.get(), std::move(api));

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
  auto fail = [&s](const absl::Status& st) {
    s->grpc_->Shutdown();
    s->loop_->Stop();
    s->loop_.reset();
    return st;
  };
  http::HttpServerOptions http_options;
  http_options.threads = o.http_threads;
  if (o.http_port >= 0) {
    http::HttpServerOptions api_options = http_options;
    api_options.tls_cert_pem = cert_pem;
    api_options.tls_key_pem = key_pem;
    http::OpenAiApi* openai = s->openai_.get();
    s->api_http_ = std::make_unique<http::HttpServer>(
        [openai](const http::HttpRequest& r, std::shared_ptr<http::HttpReply> reply) { openai->Handle(r, std::move(reply)); },
        api_options);
    absl::StatusOr<int> port = s->api_http_->Start(host, o.http_port, "--http-port");
    if (!port.ok()) return fail(port.status());
    s->http_port_ = *port;
  }
  if (o.metrics_port >= 0) {
    if (o.metrics_tls) {
      if (cert_pem.empty()) return fail(absl::InvalidArgumentError("--metrics-tls needs --tls-cert and --tls-key"));
      http_options.tls_cert_pem = cert_pem;
      http_options.tls_key_pem = key_pem;
    }
    s->http_ = std::make_unique<http::HttpServer>(
        http::ProbeHandler([raw, name] { return raw->metrics_->registry().Render() + raw->executor_->RenderMetrics(name); }, [raw] { return raw->serving_.load(); }),
        http_options);
    absl::StatusOr<int> port = s->http_->Start(host, o.metrics_port, "--metrics-port");
    if (!port.ok()) {
      if (s->api_http_) s->api_http_->Stop(std::chrono::milliseconds(0));
      return fail(port.status());
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
  if (api_http_) api_http_->Stop();
  if (http_) http_->Stop();
}

Server::~Server() {
  if (!shut_down_) Shutdown(std::chrono::milliseconds(0));
}

}  // namespace layerskip::coordinator
