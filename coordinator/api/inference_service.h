#pragma once
// The layerskip.v1.Inference service on gRPC's callback API. Generate streams with a ServerWriteReactor;
// Complete is unary. Both validate, submit to the EngineLoop, and cancel their request when the client
// cancels or the deadline expires (OnCancel). absl::Status turns into grpc::Status here, at the RPC edge.
// The methods whose requests carry strings (Generate, Complete, Tokenize) are registered raw: the service
// parses the bytes itself (wire_request.h) so that malformed or non-UTF-8 requests get INVALID_ARGUMENT.
#include <memory>
#include <string>

#include "coordinator/api/auth.h"
#include "coordinator/scheduling/engine_loop.h"
#include "coordinator/api/validation.h"
#include "layerskip/v1/inference.grpc.pb.h"

namespace layerskip::coordinator {

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

using RawInferenceBase = v1::Inference::WithRawCallbackMethod_Generate<
    v1::Inference::WithRawCallbackMethod_Complete<v1::Inference::WithRawCallbackMethod_Tokenize<v1::Inference::CallbackService>>>;

class InferenceService final : public RawInferenceBase {
 public:
  // All pointers outlive the service. `info` is returned by GetModelInfo as is.
  InferenceService(EngineLoop* loop, const ServingDefaults* defaults, const Authenticator* auth, v1::ModelInfo info)
      : loop_(loop), defaults_(defaults), auth_(auth), info_(std::move(info)) {}

  // Raw: the request is a GenerateRequest / TokenizeRequest, the responses their response messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context, const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  // Validation (after auth and parsing) -> a Request ready to submit, or the error to return.
  absl::StatusOr<std::shared_ptr<Request>> Prepare(grpc::CallbackServerContext* context, const v1::GenerateRequest& q);

  EngineLoop* loop_;
  const ServingDefaults* defaults_;
  const Authenticator* auth_;
  v1::ModelInfo info_;
};

// The summary message of a finished request.
void FillSummary(const RequestSummary& s, v1::GenerationSummary* out);

}  // namespace layerskip::coordinator
