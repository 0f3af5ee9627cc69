#pragma once
// The layerskip.v1.Inference service on gRPC's callback API. Generate streams with a ServerWriteReactor;
// Complete is unary. Both validate, submit to the EngineLoop, and cancel their request when the client
// cancels or the deadline expires (OnCancel). absl::Status turns into grpc::Status here, at the RPC edge.
#include <memory>
#include <string>

#include "coordinator/auth.h"
#include "coordinator/engine_loop.h"
#include "coordinator/validation.h"
#include "layerskip/v1/inference.grpc.pb.h"

namespace layerskip::coordinator {

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // All pointers outlive the service. `info` is returned by GetModelInfo as is.
  InferenceService(EngineLoop* loop, const ServingDefaults* defaults, const Authenticator* auth, v1::ModelInfo info)
      : loop_(loop), defaults_(defaults), auth_(auth), info_(std::move(info)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                          const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
                                     v1::CompleteResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context, const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  // Auth + validation -> a Request ready to submit, or the error to return.
  absl::StatusOr<std::shared_ptr<Request>> Prepare(grpc::CallbackServerContext* context, const v1::GenerateRequest& q);

  EngineLoop* loop_;
  const ServingDefaults* defaults_;
  const Authenticator* auth_;
  v1::ModelInfo info_;
};

// The summary message of a finished request.
void FillSummary(const RequestSummary& s, v1::GenerationSummary* out);

}  // namespace layerskip::coordinator
