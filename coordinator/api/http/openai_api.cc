#include "coordinator/api/http/openai_api.h"

#include <ctime>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/api/http/openai_error.h"
#include "coordinator/api/http/openai_request.h"
#include "coordinator/api/http/openai_sink.h"

namespace layerskip::coordinator::http {
namespace {

void SendError(HttpReply& reply, const HttpError& e) {
  std::vector<std::string> extra;
  if (e.status == 401) extra.push_back("WWW-Authenticate: Bearer");
  reply.Send(e.status, "application/json", e.body, std::move(extra));
}

// /health and /metrics; false when `r` is neither.
bool Probe(const HttpRequest& r, HttpReply& reply, const std::function<std::string()>& render,
           const std::function<bool()>& serving) {
  if (r.path != "/health" && r.path != "/metrics") return false;
  if (r.method != "GET" && r.method != "HEAD") {
    reply.Send(405, "text/plain", "GET only\n", {"Allow: GET, HEAD"});
  } else if (r.path == "/metrics") {
    reply.Send(200, "text/plain; version=0.0.4; charset=utf-8", render());
  } else if (serving()) {
    reply.Send(200, "text/plain", "SERVING\n");
  } else {
    reply.Send(503, "text/plain", "NOT_SERVING\n");
  }
  return true;
}

}  // namespace

HttpHandler ProbeHandler(std::function<std::string()> render_metrics, std::function<bool()> serving) {
  return [render = std::move(render_metrics), serving = std::move(serving)](const HttpRequest& r,
                                                                             std::shared_ptr<HttpReply> reply) {
    if (!Probe(r, *reply, render, serving)) reply->Send(404, "text/plain", "not found (GET /health or /metrics)\n");
  };
}

OpenAiApi::OpenAiApi(EngineLoop* loop, const ServingDefaults* defaults, const Authenticator* auth, OpenAiApiConfig config)
    : loop_(loop), defaults_(defaults), auth_(auth), config_(std::move(config)), created_(std::time(nullptr)) {}

void OpenAiApi::Handle(const HttpRequest& r, std::shared_ptr<HttpReply> reply) {
  if (Probe(r, *reply, config_.render_metrics, config_.serving)) return;
  const bool completions = r.path == "/v1/completions", chat = r.path == "/v1/chat/completions";
  const bool models = r.path == "/v1/models";
  if (!completions && !chat && !models)
    return SendError(*reply, MakeHttpError(404, absl::StrCat("no route ", r.method, " ", r.path,
                                                             " (POST /v1/completions, POST /v1/chat/completions, GET /v1/models)")));
  if ((models && r.method != "GET") || (!models && r.method != "POST"))
    return SendError(*reply, MakeHttpError(405, absl::StrCat(r.path, " takes ", models ? "GET" : "POST", ", not ", r.method)));
  std::string_view authorization;
  if (r.authorization) authorization = *r.authorization;
  if (absl::Status a = auth_->CheckHeader(r.authorization ? &authorization : nullptr); !a.ok())
    return SendError(*reply, ToHttpError(a));
  if (models) return Models(std::move(reply));
  Completion(r, std::move(reply), chat);
}

void OpenAiApi::Models(std::shared_ptr<HttpReply> reply) {
  nlohmann::json m = {{"id", config_.model_name}, {"object", "model"}, {"created", created_},
                      {"owned_by", "layerskip"}, {"max_model_len", defaults_->context}};
  nlohmann::json j = {{"object", "list"}, {"data", nlohmann::json::array({m})}};
  reply->Send(200, "application/json", j.dump());
}

void OpenAiApi::Completion(const HttpRequest& r, std::shared_ptr<HttpReply> reply, bool chat) {
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(r.body, chat);
  if (!parsed.ok()) return SendError(*reply, ToHttpError(parsed.status()));
  if (!parsed->model.empty() && parsed->model != config_.model_name)
    return SendError(*reply, MakeHttpError(404, absl::StrCat("The model `", parsed->model, "` does not exist; this server serves `",
                                                             config_.model_name, "`"), "model"));
  if (chat) {
    if (!config_.chat_template)
      return SendError(*reply, MakeHttpError(400, config_.chat_template_error.empty()
                                                      ? "this model has no chat template (tokenizer_config.json has no "
                                                        "chat_template; start the server with --chat-template FILE)"
                                                      : config_.chat_template_error, "messages"));
    if (!defaults_->tokenizer) return SendError(*reply, MakeHttpError(400, "the model has no tokenizer", "messages"));
    absl::StatusOr<std::string> prompt = config_.chat_template->Render(
        parsed->messages, parsed->add_generation_prompt, config_.bos_token, config_.eos_token);
    if (!prompt.ok())
      return SendError(*reply, MakeHttpError(400, absl::StrCat("messages: the chat template failed: ", prompt.status().message()), "messages"));
    // The template writes the special tokens itself (bos_token), as transformers' apply_chat_template does.
    for (int id : defaults_->tokenizer->Encode(*prompt, /*add_special_tokens=*/false)) parsed->generate.add_prompt_ids(id);
  }
  absl::StatusOr<RequestSpec> spec = ValidateGenerateRequest(parsed->generate, *defaults_);
  if (!spec.ok()) return SendError(*reply, ToHttpError(spec.status()));

  ResponseShape shape;
  shape.chat = chat;
  shape.stream = parsed->stream;
  shape.include_usage = parsed->include_usage;
  shape.id = absl::StrFormat("%s-%x%08x", chat ? "chatcmpl" : "cmpl", created_, next_id_.fetch_add(1));
  shape.model = config_.model_name;
  shape.created = std::time(nullptr);
  auto sink = std::make_shared<OpenAiSink>(reply, std::move(shape));
  auto request = std::make_shared<Request>();
  request->spec = *std::move(spec);
  request->sink = sink;
  // A client that goes away cancels the request (its slot is freed within one engine round).
  reply->OnAbort([loop = loop_, weak = std::weak_ptr<Request>(request)] {
    if (auto q = weak.lock()) loop->Cancel(q.get());
  });
  // Submit first, so a full queue is a plain 429 even for a stream; the sink holds what the engine sends
  // until Begin has written the stream's head.
  if (absl::Status s = loop_->Submit(request); !s.ok()) {
    sink->Abandon();
    return SendError(*reply, ToHttpError(s));
  }
  sink->Begin();
}

}  // namespace layerskip::coordinator::http
