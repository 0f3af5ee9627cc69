#pragma once
// Optional bearer-token check: with a token configured, every Inference RPC must carry the metadata
// `authorization: Bearer <token>`, else UNAUTHENTICATED. The standard health service and reflection stay
// open (probes and tooling need no secret; they reveal nothing about requests).
#include <string>

#include <grpcpp/grpcpp.h>

namespace layerskip::coordinator {

class Authenticator {
 public:
  explicit Authenticator(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  // OK when auth is off or the call carries the right token; UNAUTHENTICATED otherwise.
  grpc::Status Check(const grpc::ServerContextBase& context) const;

 private:
  std::string token_;
};

}  // namespace layerskip::coordinator
