#pragma once
// The cluster token shared by the coordinator and its workers: one file, read the same way by both
// binaries (the whole file, trailing whitespace such as "\r\n" stripped). It travels as the gRPC metadata
// `x-layerskip-cluster-token` (kClusterTokenMetadataKey) on every Worker RPC and keys the data links'
// challenge-response (transport/link_auth.h).
#include <string>

#include "absl/status/statusor.h"

namespace layerskip::flags {

inline constexpr char kClusterTokenMetadataKey[] = "x-layerskip-cluster-token";

// The token in `path`. INVALID_ARGUMENT naming `flag` when the file cannot be read or holds only whitespace.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path, const std::string& flag);

}  // namespace layerskip::flags
