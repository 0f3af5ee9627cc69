#include "worker/auth.h"

namespace layerskip::worker {

grpc::Status ClusterAuth::Check(const grpc::ServerContext& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find(kClusterTokenKey);
  if (it == md.end())
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "worker: missing cluster token (x-layerskip-cluster-token)");
  const grpc::string_ref got = it->second;
  // Constant-time comparison: the time taken does not reveal how much of the token matched.
  unsigned diff = got.size() != token_.size();
  for (size_t i = 0; i < token_.size(); ++i) diff |= static_cast<unsigned>(static_cast<unsigned char>(token_[i]) ^ static_cast<unsigned char>(i < got.size() ? got.data()[i] : 0));
  if (diff != 0) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "worker: wrong cluster token");
  return grpc::Status::OK;
}

}  // namespace layerskip::worker
