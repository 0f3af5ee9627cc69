#pragma once
// The cluster token: every Worker RPC must carry metadata `x-layerskip-cluster-token: <token>`
// (flags::kClusterTokenMetadataKey), so only the coordinator of this cluster can drive the worker. TLS (server credentials) is set up in main.cc.
#include <string>

#include <grpcpp/grpcpp.h>

#include "flags/token_file.h"

namespace layerskip::worker {

inline constexpr const char* kClusterTokenKey = flags::kClusterTokenMetadataKey;

class ClusterAuth {
 public:
  // An empty token accepts every call (only with --allow-unauthenticated).
  explicit ClusterAuth(std::string token) : token_(std::move(token)) {}
  // OK, or UNAUTHENTICATED when the call lacks the token or carries another one.
  grpc::Status Check(const grpc::ServerContext& context) const;

 private:
  std::string token_;
};

}  // namespace layerskip::worker
