#include "coordinator/api/http/openai_sink.h"

#include <nlohmann/json.hpp>

#include "coordinator/api/http/openai_error.h"

namespace layerskip::coordinator::http {
namespace {

using nlohmann::json;

json Usage(const RequestSummary& s) {
  return {{"prompt_tokens", s.prompt_tokens},
          {"completion_tokens", s.completion_tokens},
          {"total_tokens", s.prompt_tokens + s.completion_tokens}};
}

// LayerSkip's own summary, beside OpenAI's fields: the mode, exit layer and speculation statistics.
json LayerSkipSummary(const RequestSummary& s) {
  json j = {{"mode", DecodeModeName(s.options.mode)}};
  if (s.options.mode != DecodeMode::kAutoregressive)  // auto: the E chosen most (0: every step autoregressive)
    j["exit_layer"] = s.options.automatic() && s.options.auto_exit_layer ? s.spec.MostUsedChoice().first : s.options.exit_layer;
  if (s.options.mode == DecodeMode::kSelfSpeculative) {
    j["speculation"] = {{"rounds", s.spec.rounds},
                        {"drafted", s.spec.drafted},
                        {"accepted", s.spec.accepted},
                        {"acceptance_rate", s.spec.acceptance_rate()},
                        {"tokens_per_round", s.spec.tokens_per_round()},
                        {"autoregressive_steps", s.autoregressive_steps}};
    // The draft length used (the automatic policy's most used choice), as in gRPC's GenerationSummary.
    j["speculations"] = s.options.auto_speculations ? s.spec.MostUsedChoice().second : s.options.speculation.speculations;
    if (s.options.automatic()) j["predicted_speedup"] = s.spec.predicted_speedup;
  }
  return j;
}

std::string Event(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }

}  // namespace

const char* OpenAiFinishReason(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    default: return "abort";
  }
}

OpenAiSink::OpenAiSink(std::shared_ptr<HttpReply> reply, ResponseShape shape)
    : reply_(std::move(reply)), shape_(std::move(shape)) {}

std::string OpenAiSink::Chunk(const std::string& delta_text, const char* finish_reason, bool role) const {
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  if (shape_.chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (role || !delta_text.empty()) delta["content"] = delta_text;
    choice["delta"] = delta;
  } else {
    choice["text"] = delta_text;
  }
  json j = {{"id", shape_.id},
            {"object", shape_.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", shape_.created},
            {"model", shape_.model},
            {"choices", json::array({choice})}};
  return Event(j);
}

void OpenAiSink::Begin() {
  std::lock_guard<std::mutex> l(mu_);
  if (!reply_ || !shape_.stream || begun_) return;
  begun_ = true;
  reply_->StartStream("text/event-stream");
  std::string first = shape_.chat ? Chunk("", nullptr, /*role=*/true) : std::string();
  first += held_;
  held_.clear();
  if (!first.empty()) reply_->Write(std::move(first));
  if (ended_) {
    reply_->End();
    reply_.reset();
  }
}

void OpenAiSink::Abandon() {
  std::lock_guard<std::mutex> l(mu_);
  reply_.reset();
}

void OpenAiSink::EmitLocked(std::string data, bool end) {
  if (!begun_) {
    held_ += data;
    ended_ = ended_ || end;
    return;
  }
  reply_->Write(std::move(data));
  if (end) {
    reply_->End();
    reply_.reset();
  }
}

void OpenAiSink::OnTokens(const std::vector<int>&, const std::string& text) {
  std::lock_guard<std::mutex> l(mu_);
  if (!reply_ || text.empty() || ended_) return;
  if (shape_.stream) EmitLocked(Chunk(text, nullptr, false), false);
  else text_ += text;
}

void OpenAiSink::OnFinish(const RequestSummary& s) {
  std::lock_guard<std::mutex> l(mu_);
  if (!reply_ || ended_) return;
  const char* reason = OpenAiFinishReason(s.finish_reason);
  if (shape_.stream) {
    std::string out = Chunk("", reason, false);
    if (shape_.include_usage) {
      json j = {{"id", shape_.id},
                {"object", shape_.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", shape_.created},
                {"model", shape_.model},
                {"choices", json::array()},
                {"usage", Usage(s)},
                {"layerskip", LayerSkipSummary(s)}};
      out += Event(j);
    }
    out += "data: [DONE]\n\n";
    return EmitLocked(std::move(out), true);
  } else {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason}};
    if (shape_.chat) choice["message"] = {{"role", "assistant"}, {"content", text_}};
    else choice["text"] = text_;
    json j = {{"id", shape_.id},
              {"object", shape_.chat ? "chat.completion" : "text_completion"},
              {"created", shape_.created},
              {"model", shape_.model},
              {"choices", json::array({choice})},
              {"usage", Usage(s)},
              {"layerskip", LayerSkipSummary(s)}};
    reply_->Send(200, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  reply_.reset();
}

void OpenAiSink::OnError(const absl::Status& status) {
  std::lock_guard<std::mutex> l(mu_);
  if (!reply_ || ended_) return;
  HttpError e = ToHttpError(status);
  if (shape_.stream) {  // the head is out: report the error as an event, then end the stream
    return EmitLocked("data: " + e.body + "\n\ndata: [DONE]\n\n", true);
  } else {
    reply_->Send(e.status, "application/json", e.body);
  }
  reply_.reset();
}

}  // namespace layerskip::coordinator::http
