#include "coordinator/api/inference_service.h"

#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "coordinator/api/wire_request.h"

namespace layerskip::coordinator {
namespace {

v1::DecodeMode ToProto(DecodeMode m) {
  switch (m) {
    case DecodeMode::kAutoregressive: return v1::DECODE_MODE_AUTOREGRESSIVE;
    case DecodeMode::kEarlyExit: return v1::DECODE_MODE_EARLY_EXIT;
    case DecodeMode::kSelfSpeculative: return v1::DECODE_MODE_SELF_SPECULATIVE;
  }
  return v1::DECODE_MODE_UNSPECIFIED;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// A reactor that fails at once (auth, validation, a full queue).
class FailedWriter : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedWriter(const grpc::Status& s) { Finish(s); }
  void OnDone() override { delete this; }
};

// The Generate stream's sink. The engine thread queues messages; consecutive token messages merge while a
// write is in flight (a slow client gets bigger messages, never an unbounded queue of small ones). The
// reactor may go away first (client gone): then everything is dropped.
class StreamSink : public RequestSink {
 public:
  void Attach(grpc::ServerWriteReactor<grpc::ByteBuffer>* reactor) {
    std::lock_guard<std::recursive_mutex> l(mu_);
    reactor_ = reactor;
  }
  void Detach() {
    std::lock_guard<std::recursive_mutex> l(mu_);
    reactor_ = nullptr;
  }
  void WriteDone(bool ok) {
    std::lock_guard<std::recursive_mutex> l(mu_);
    writing_ = false;
    if (!ok) {  // the stream is broken (client cancelled): finish without more writes
      queue_.clear();
      if (!finished_ && reactor_) {
        finished_ = true;
        reactor_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
      }
      return;
    }
    PumpLocked();
  }

  void OnTokens(const std::vector<int>& ids, const std::string& text) override {
    std::lock_guard<std::recursive_mutex> l(mu_);
    if (!reactor_ || done_) return;
    if (queue_.empty()) queue_.emplace_back();
    v1::GenerateResponse& m = queue_.back();
    for (int id : ids) m.add_token_ids(id);
    m.mutable_text()->append(text);
    PumpLocked();
  }
  void OnFinish(const RequestSummary& s) override {
    std::lock_guard<std::recursive_mutex> l(mu_);
    if (!reactor_ || done_) return;
    if (queue_.empty()) queue_.emplace_back();
    FillSummary(s, queue_.back().mutable_summary());
    done_ = true;
    PumpLocked();
  }
  void OnError(const absl::Status& status) override {
    std::lock_guard<std::recursive_mutex> l(mu_);
    if (!reactor_ || done_) return;
    done_ = true;
    status_ = ToGrpcStatus(status);
    PumpLocked();
  }

 private:
  void PumpLocked() {
    if (!reactor_ || writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = ToByteBuffer(queue_.front());
      queue_.pop_front();
      writing_ = true;
      reactor_->StartWrite(&current_);
      return;
    }
    if (done_) {
      finished_ = true;
      reactor_->Finish(status_);
    }
  }

  std::recursive_mutex mu_;  // StartWrite may run OnWriteDone inline
  grpc::ServerWriteReactor<grpc::ByteBuffer>* reactor_ = nullptr;
  std::deque<v1::GenerateResponse> queue_;
  grpc::ByteBuffer current_;  // the message being written, serialized
  bool writing_ = false, done_ = false, finished_ = false;
  grpc::Status status_ = grpc::Status::OK;
};

class GenerateReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(EngineLoop* loop, std::shared_ptr<Request> request, std::shared_ptr<StreamSink> sink)
      : loop_(loop), request_(std::move(request)), sink_(std::move(sink)) {
    sink_->Attach(this);
    absl::Status s = loop_->Submit(request_);
    if (!s.ok()) sink_->OnError(s);
  }
  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }
  void OnCancel() override { loop_->Cancel(request_.get()); }
  void OnDone() override {
    sink_->Detach();
    loop_->Cancel(request_.get());  // no-op for a finished request
    delete this;
  }

 private:
  EngineLoop* loop_;
  std::shared_ptr<Request> request_;
  std::shared_ptr<StreamSink> sink_;
};

// Complete's sink: collects the whole response, then finishes the unary reactor.
class CompleteReactor;
class UnarySink : public RequestSink {
 public:
  UnarySink(grpc::ServerUnaryReactor* reactor, grpc::ByteBuffer* out) : reactor_(reactor), out_(out) {}
  void Detach() {
    std::lock_guard<std::mutex> l(mu_);
    reactor_ = nullptr;
  }
  void OnTokens(const std::vector<int>& ids, const std::string& text) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!reactor_ || done_) return;
    for (int id : ids) response_.add_token_ids(id);
    response_.mutable_text()->append(text);
  }
  void OnFinish(const RequestSummary& s) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!reactor_ || done_) return;
    done_ = true;
    FillSummary(s, response_.mutable_summary());
    *out_ = ToByteBuffer(response_);
    reactor_->Finish(grpc::Status::OK);
  }
  void OnError(const absl::Status& status) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!reactor_ || done_) return;
    done_ = true;
    reactor_->Finish(ToGrpcStatus(status));
  }

 private:
  std::mutex mu_;
  grpc::ServerUnaryReactor* reactor_;
  v1::CompleteResponse response_;
  grpc::ByteBuffer* out_;
  bool done_ = false;
};

class CompleteReactor : public grpc::ServerUnaryReactor {
 public:
  CompleteReactor(EngineLoop* loop, std::shared_ptr<Request> request, grpc::ByteBuffer* response)
      : loop_(loop), request_(std::move(request)) {
    sink_ = std::make_shared<UnarySink>(this, response);
    request_->sink = sink_;
    absl::Status s = loop_->Submit(request_);
    if (!s.ok()) sink_->OnError(s);
  }
  void OnCancel() override { loop_->Cancel(request_.get()); }
  void OnDone() override {
    sink_->Detach();
    loop_->Cancel(request_.get());
    delete this;
  }

 private:
  EngineLoop* loop_;
  std::shared_ptr<Request> request_;
  std::shared_ptr<UnarySink> sink_;
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(status.code())), std::string(status.message()));
}

void FillSummary(const RequestSummary& s, v1::GenerationSummary* out) {
  out->set_finish_reason(ToProto(s.finish_reason));
  out->mutable_usage()->set_prompt_tokens(s.prompt_tokens);
  out->mutable_usage()->set_completion_tokens(s.completion_tokens);
  out->set_mode(ToProto(s.options.mode));
  // With auto_exit_layer, the E the policy chose most (0: every step was autoregressive).
  if (s.options.mode != DecodeMode::kAutoregressive)
    out->set_exit_layer(s.options.automatic() && s.options.auto_exit_layer ? s.spec.MostUsedChoice().first : s.options.exit_layer);
  if (s.options.mode == DecodeMode::kSelfSpeculative) {
    v1::SpeculationStats* sp = out->mutable_speculation();
    sp->set_rounds(s.spec.rounds);
    sp->set_drafted(s.spec.drafted);
    sp->set_accepted(s.spec.accepted);
    sp->set_acceptance_rate(s.spec.acceptance_rate());
    sp->set_tokens_per_round(s.spec.tokens_per_round());
    for (int64_t v : s.spec.drafted_per_position) sp->add_drafted_per_position(v);
    for (int64_t v : s.spec.accepted_per_position) sp->add_accepted_per_position(v);
    sp->set_autoregressive_steps(s.autoregressive_steps);
    const auto [e, d] = s.spec.MostUsedChoice();
    out->set_speculations(s.options.auto_speculations ? d : s.options.speculation.speculations);
    if (s.options.automatic()) out->set_predicted_speedup(s.spec.predicted_speedup);
  }
  out->mutable_timing()->set_queue_seconds(s.queue_seconds);
  out->mutable_timing()->set_time_to_first_token_seconds(s.ttft_seconds);
  out->mutable_timing()->set_e2e_seconds(s.e2e_seconds);
}

absl::StatusOr<std::shared_ptr<Request>> InferenceService::Prepare(grpc::CallbackServerContext* context,
                                                                   const v1::GenerateRequest& q) {
  absl::StatusOr<RequestSpec> spec = ValidateGenerateRequest(q, *defaults_);
  if (!spec.ok()) return spec.status();
  auto r = std::make_shared<Request>();
  r->spec = *std::move(spec);
  const auto deadline = context->deadline();
  if (deadline < std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    r->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(deadline - std::chrono::system_clock::now());
  }
  return r;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                                      const grpc::ByteBuffer* payload) {
  if (grpc::Status a = auth_->Check(*context); !a.ok()) return new FailedWriter(a);  // before reading the request
  v1::GenerateRequest request;
  if (absl::Status p = ParseRequest(*payload, context->peer(), &request); !p.ok()) return new FailedWriter(ToGrpcStatus(p));
  absl::StatusOr<std::shared_ptr<Request>> r = Prepare(context, request);
  if (!r.ok()) return new FailedWriter(ToGrpcStatus(r.status()));
  auto sink = std::make_shared<StreamSink>();
  (*r)->sink = sink;
  return new GenerateReactor(loop_, *std::move(r), std::move(sink));
}

grpc::ServerUnaryReactor* InferenceService::Complete(grpc::CallbackServerContext* context, const grpc::ByteBuffer* payload,
                                                     grpc::ByteBuffer* response) {
  v1::GenerateRequest request;
  grpc::Status a = auth_->Check(*context);  // before reading the request
  absl::Status parsed = a.ok() ? ParseRequest(*payload, context->peer(), &request) : absl::UnauthenticatedError(a.error_message());
  absl::StatusOr<std::shared_ptr<Request>> r = parsed.ok() ? Prepare(context, request) : parsed;
  if (!r.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(r.status()));
    return reactor;
  }
  return new CompleteReactor(loop_, *std::move(r), response);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context, const grpc::ByteBuffer* payload,
                                                     grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  v1::TokenizeRequest request;
  grpc::Status a = auth_->Check(*context);
  if (!a.ok()) {
    reactor->Finish(a);
  } else if (absl::Status p = ParseRequest(*payload, context->peer(), &request); !p.ok()) {
    reactor->Finish(ToGrpcStatus(p));
  } else if (!defaults_->tokenizer) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer"));
  } else {
    v1::TokenizeResponse out;
    const bool special = request.has_add_special_tokens() ? request.add_special_tokens() : true;
    for (int id : defaults_->tokenizer->Encode(request.text(), special)) out.add_ids(id);
    *response = ToByteBuffer(out);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest*, v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status a = auth_->Check(*context);
  if (a.ok()) *response = info_;
  reactor->Finish(a);
  return reactor;
}

}  // namespace layerskip::coordinator
