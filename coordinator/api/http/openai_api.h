#pragma once
// The OpenAI-compatible routes on the coordinator's HTTP port: POST /v1/completions,
// POST /v1/chat/completions, GET /v1/models (bearer token when the server has one), and the open probes
// GET /health and GET /metrics. Completions are submitted to the same EngineLoop as gRPC requests (so both
// batch together) after the same ValidateGenerateRequest; a client that disconnects cancels its request.
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "coordinator/api/auth.h"
#include "coordinator/api/chat/chat_template.h"
#include "coordinator/scheduling/engine_loop.h"
#include "coordinator/api/http/http_server.h"
#include "coordinator/api/validation.h"

namespace layerskip::coordinator::http {

struct OpenAiApiConfig {
  std::string model_name;
  std::shared_ptr<const chat::ChatTemplate> chat_template;  // null: the chat route answers 400
  std::string chat_template_error;                          // why there is none (shown in that 400)
  std::string bos_token, eos_token;
  std::function<std::string()> render_metrics;
  std::function<bool()> serving;
};

class OpenAiApi {
 public:
  // Pointers outlive the object.
  OpenAiApi(EngineLoop* loop, const ServingDefaults* defaults, const Authenticator* auth, OpenAiApiConfig config);
  // The HttpHandler.
  void Handle(const HttpRequest& request, std::shared_ptr<HttpReply> reply);

 private:
  void Completion(const HttpRequest& request, std::shared_ptr<HttpReply> reply, bool chat);
  void Models(std::shared_ptr<HttpReply> reply);

  EngineLoop* loop_;
  const ServingDefaults* defaults_;
  const Authenticator* auth_;
  OpenAiApiConfig config_;
  int64_t created_;  // the server's start time, /v1/models' "created"
  std::atomic<uint64_t> next_id_{1};
};

// GET /health and GET /metrics only: the handler of the --metrics-port server.
HttpHandler ProbeHandler(std::function<std::string()> render_metrics, std::function<bool()> serving);

}  // namespace layerskip::coordinator::http
