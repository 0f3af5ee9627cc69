#pragma once
// Request messages parsed by the service itself (the Inference methods with string fields are registered
// raw): malformed bytes (truncated, not protobuf) and string fields that are not UTF-8 become
// INVALID_ARGUMENT naming the message or the field, instead of gRPC's empty-message answer and a
// libprotobuf log line per request. Rejections are logged at most once per interval, with a count.
#include <string>

#include <grpcpp/grpcpp.h>
#include <google/protobuf/message.h>

#include "absl/status/status.h"

namespace layerskip::coordinator {

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(const std::string& s);

// Checks the wire bytes against `descriptor` (string fields UTF-8, nested messages recursively; unknown
// fields skipped), then parses them into `out`. INVALID_ARGUMENT on any problem.
absl::Status ParseWireMessage(const std::string& bytes, google::protobuf::Message* out);

// ParseWireMessage over a gRPC payload; a rejection is logged (rate-limited) with the peer.
absl::Status ParseRequest(const grpc::ByteBuffer& payload, const std::string& peer, google::protobuf::Message* out);

// A message as a gRPC payload.
grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message);

}  // namespace layerskip::coordinator
