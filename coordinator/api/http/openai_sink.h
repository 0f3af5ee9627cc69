#pragma once
// A request's RequestSink for the OpenAI routes: collects the text for a JSON response, or streams it as
// server-sent events ("data: {chunk}\n\n" ... "data: [DONE]\n\n"). Called from the engine thread; writes
// go to the HttpReply, which owns the connection.
#include <memory>
#include <mutex>
#include <string>

#include "coordinator/api/http/http_server.h"
#include "coordinator/scheduling/request.h"

namespace layerskip::coordinator::http {

struct ResponseShape {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  std::string id;     // "cmpl-..." / "chatcmpl-..."
  std::string model;  // the served model's name
  int64_t created = 0;
};

class OpenAiSink : public RequestSink {
 public:
  OpenAiSink(std::shared_ptr<HttpReply> reply, ResponseShape shape);
  // Streaming: sends the response head, the chat stream's first (role-only) chunk, and what the engine
  // sent before. Without streaming it does nothing.
  void Begin();
  // Forgets the reply (the request was never submitted).
  void Abandon();
  void OnTokens(const std::vector<int>& ids, const std::string& text) override;
  void OnFinish(const RequestSummary& summary) override;
  void OnError(const absl::Status& status) override;

 private:
  std::string Chunk(const std::string& delta_text, const char* finish_reason, bool role) const;
  // Streams `data` (held until Begin); `end` ends the stream and releases the reply (mu_ held).
  void EmitLocked(std::string data, bool end);

  std::mutex mu_;
  std::shared_ptr<HttpReply> reply_;  // released once the reply is complete
  ResponseShape shape_;
  std::string text_;  // non-streaming: the whole completion
  bool begun_ = false, ended_ = false;
  std::string held_;  // streaming: events before Begin
};

// "stop", "length" or "abort" (server shutdown).
const char* OpenAiFinishReason(FinishReason r);

}  // namespace layerskip::coordinator::http
