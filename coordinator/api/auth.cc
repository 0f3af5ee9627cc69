#include "coordinator/api/auth.h"

#include <cctype>

namespace layerskip::coordinator {
namespace {

// Compares without an early exit on the first differing byte.
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r' || v.back() == '\n')) v.remove_suffix(1);
  return v;
}

// "Bearer" in any case, then at least one space.
bool HasBearerScheme(std::string_view v) {
  constexpr std::string_view kScheme = "bearer";
  if (v.size() <= kScheme.size() || v[kScheme.size()] != ' ') return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(v[i])) != kScheme[i]) return false;
  return true;
}

}  // namespace

absl::Status Authenticator::CheckHeader(const std::string_view* authorization) const {
  if (token_.empty()) return absl::OkStatus();
  if (!authorization) return absl::UnauthenticatedError("missing authorization: Bearer <token>");
  std::string_view value = Trim(*authorization);
  if (!HasBearerScheme(value)) return absl::UnauthenticatedError("authorization: expected the Bearer scheme");
  value = Trim(value.substr(6));
  if (!SameSecret(value, token_)) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

grpc::Status Authenticator::Check(const grpc::ServerContextBase& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  std::string_view value;
  if (it != md.end()) value = std::string_view(it->second.data(), it->second.size());
  absl::Status s = CheckHeader(it == md.end() ? nullptr : &value);
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(s.message()));
}

}  // namespace layerskip::coordinator
