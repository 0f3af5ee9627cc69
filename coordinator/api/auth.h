#pragma once
// Optional bearer-token check: with a token configured, every Inference RPC must carry the metadata
// `authorization: Bearer <token>` (and every OpenAI HTTP request the header `Authorization: Bearer <token>`),
// else UNAUTHENTICATED / 401. The scheme name is case-insensitive (RFC 7235: "bearer", "BEARER" work).
// The standard health service, reflection, /health and /metrics stay open (probes and tooling need no
// secret; they reveal nothing about requests).
#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace layerskip::coordinator {

class Authenticator {
 public:
  explicit Authenticator(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  // OK when auth is off or `authorization` (the header's value; null: absent) is "Bearer <token>" with the
  // scheme in any case; UNAUTHENTICATED naming what is wrong otherwise.
  absl::Status CheckHeader(const std::string_view* authorization) const;
  // The same for a gRPC call's `authorization` metadata.
  grpc::Status Check(const grpc::ServerContextBase& context) const;

 private:
  std::string token_;
};

}  // namespace layerskip::coordinator
