#pragma once
// The coordinator's handle on one pipeline stage: its worker's channel and stub, what it should hold, and
// whether it is up. Calls run on their own thread (std::async over the blocking stub) so the stages of a
// round proceed in parallel; each carries the cluster token and a deadline and can be cancelled.
#include <future>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "flags/token_file.h"
#include "coordinator/execution/pipeline/stage_plan.h"
#include "layerskip/v1/worker.grpc.pb.h"

namespace layerskip::pipeline {

struct StageClient {
  int index = 0;
  std::string endpoint;            // the worker's control address
  StageRange range;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Worker::Stub> stub;
  bool up = false;
  int64_t pid = 0;                 // the worker process that holds our shard (a new pid = restarted)
  std::string data_endpoint;       // its TCP activation listener
  std::string Name() const {
    return "stage " + std::to_string(index) + " (" + endpoint + ", layers " + std::to_string(range.first_layer) + "-" +
           std::to_string(range.end_layer - 1) + ")";
  }
};

// One RPC in flight.
template <class Req, class Resp>
struct PendingCall {
  StageClient* stage = nullptr;
  std::unique_ptr<grpc::ClientContext> context;
  Req request;
  Resp response;
  std::future<grpc::Status> status;
  grpc::Status Wait() { return status.get(); }
  void Cancel() { context->TryCancel(); }
};

// A context with the cluster token and a deadline.
inline std::unique_ptr<grpc::ClientContext> MakeContext(const std::string& token, absl::Duration timeout,
                                                        bool wait_for_ready = false) {
  auto c = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) c->AddMetadata(flags::kClusterTokenMetadataKey, token);
  c->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  c->set_wait_for_ready(wait_for_ready);
  return c;
}

// Starts stub->method(request) on its own thread.
template <class Req, class Resp>
std::unique_ptr<PendingCall<Req, Resp>> Launch(StageClient* stage, const std::string& token, absl::Duration timeout,
                                               grpc::Status (v1::Worker::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                                               Req request, bool wait_for_ready = false) {
  auto call = std::make_unique<PendingCall<Req, Resp>>();
  call->stage = stage;
  call->context = MakeContext(token, timeout, wait_for_ready);
  call->request = std::move(request);
  PendingCall<Req, Resp>* p = call.get();
  v1::Worker::Stub* stub = stage->stub.get();
  call->status = std::async(std::launch::async, [p, stub, method] {
    return (stub->*method)(p->context.get(), p->request, &p->response);
  });
  return call;
}

inline absl::Status FromGrpc(const grpc::Status& s, const std::string& where) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(where, ": ", s.error_message()));
}

// Waits for every call (cancelling the rest after the first failure); returns the first failure.
template <class Calls>
absl::Status WaitAll(Calls& calls, const char* what) {
  absl::Status first;
  for (auto& c : calls) {
    const grpc::Status s = c->Wait();
    if (!s.ok() && first.ok()) {
      first = FromGrpc(s, absl::StrCat(what, " on ", c->stage->Name()));
      for (auto& other : calls) other->Cancel();
    }
  }
  return first;
}

}  // namespace layerskip::pipeline
