#include "coordinator/api/wire_request.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::io::CodedInputStream;
using google::protobuf::internal::WireFormatLite;

constexpr int kMaxDepth = 32;

// Walks one message's wire bytes: string fields must be UTF-8, nested messages are walked too.
absl::Status Walk(const std::string& bytes, const Descriptor* d, int depth) {
  const std::string malformed = absl::StrCat("malformed ", d->full_name(), " message (truncated or not protobuf)");
  if (depth > kMaxDepth) return absl::InvalidArgumentError(absl::StrCat(d->full_name(), ": messages nested too deep"));
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      if (in.CurrentPosition() != static_cast<int>(bytes.size())) return absl::InvalidArgumentError(malformed);
      return absl::OkStatus();
    }
    const FieldDescriptor* f = d->FindFieldByNumber(static_cast<int>(WireFormatLite::GetTagFieldNumber(tag)));
    const bool delimited = WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    if (f != nullptr && delimited && (f->type() == FieldDescriptor::TYPE_STRING || f->type() == FieldDescriptor::TYPE_MESSAGE)) {
      uint32_t length = 0;
      std::string value;
      if (!in.ReadVarint32(&length) || !in.ReadString(&value, static_cast<int>(length)))
        return absl::InvalidArgumentError(malformed);
      if (f->type() == FieldDescriptor::TYPE_STRING && !IsValidUtf8(value))
        return absl::InvalidArgumentError(absl::StrCat("field '", f->name(), "' of ", d->full_name(), " is not valid UTF-8"));
      if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
        absl::Status s = Walk(value, f->message_type(), depth + 1);
        if (!s.ok()) return s;
      }
      continue;
    }
    if (!WireFormatLite::SkipField(&in, tag)) return absl::InvalidArgumentError(malformed);
  }
}

// At most one log line per 10 s; the lines in between are counted.
void LogRejected(const std::string& peer, const absl::Status& s) {
  static std::mutex mu;
  static std::chrono::steady_clock::time_point last{};
  static int64_t suppressed = 0;
  std::lock_guard<std::mutex> l(mu);
  const auto now = std::chrono::steady_clock::now();
  if (last != std::chrono::steady_clock::time_point{} && now - last < std::chrono::seconds(10)) {
    ++suppressed;
    return;
  }
  std::fprintf(stderr, "layerskip-coordinator: rejected a request from %s: %s (%lld more rejected since the last line)\n",
               peer.c_str(), std::string(s.message()).c_str(), static_cast<long long>(suppressed));
  last = now;
  suppressed = 0;
}

}  // namespace

bool IsValidUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

absl::Status ParseWireMessage(const std::string& bytes, google::protobuf::Message* out) {
  absl::Status s = Walk(bytes, out->GetDescriptor(), 0);
  if (!s.ok()) return s;
  if (!out->ParseFromString(bytes))
    return absl::InvalidArgumentError(absl::StrCat("malformed ", out->GetDescriptor()->full_name(), " message"));
  return absl::OkStatus();
}

absl::Status ParseRequest(const grpc::ByteBuffer& payload, const std::string& peer, google::protobuf::Message* out) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!payload.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable request payload");
  for (const grpc::Slice& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  absl::Status s = ParseWireMessage(bytes, out);
  if (!s.ok()) LogRejected(peer, s);
  return s;
}

grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace layerskip::coordinator
