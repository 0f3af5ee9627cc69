#pragma once
// The activation frame on a data link, as bytes: a fixed 32-byte header (little-endian: magic, version,
// round, step, rows, hidden, reserved) followed by rows * hidden f32. Parsing is pure (no sockets), so the
// fuzzer (tests/fuzz/frame_fuzz.cc) drives it directly. The header is checked against the receiving
// shard's limits before anything is allocated.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/activation_transport.h"

namespace layerskip {

inline constexpr size_t kFrameHeaderBytes = 32;

// What a receiver accepts: rows in [0, max_rows] of exactly `hidden` floats. hidden 0: nothing (no shard).
struct FrameLimits {
  int hidden = 0;
  int max_rows = 0;
};

// The 32 header bytes of h.
std::array<uint8_t, kFrameHeaderBytes> EncodeFrameHeader(const FrameHeader& h);

// Parses 32 header bytes. DATA_LOSS naming the field when the magic or version is wrong, rows is outside
// [0, limits.max_rows] or hidden != limits.hidden.
absl::StatusOr<FrameHeader> ParseFrameHeader(const uint8_t* bytes, const FrameLimits& limits);

// One received frame: header and [rows, hidden] floats.
struct Frame {
  FrameHeader header;
  std::vector<float> data;
};

// Bytes in, whole frames out, no I/O. The payload buffer is allocated only after its header passed
// ParseFrameHeader. After an error the decoder stays failed (the link must be closed).
class FrameDecoder {
 public:
  explicit FrameDecoder(FrameLimits limits) : limits_(limits) {}
  // Consumes all n bytes, appending each completed frame to *out.
  absl::Status Feed(const uint8_t* data, size_t n, std::vector<Frame>* out);
  // Bytes of the frame being assembled (0 between frames).
  size_t partial_bytes() const { return header_fill_ + payload_fill_; }

 private:
  FrameLimits limits_;
  absl::Status failed_;
  uint8_t header_[kFrameHeaderBytes] = {};
  size_t header_fill_ = 0;
  bool in_payload_ = false;
  Frame frame_;
  size_t payload_fill_ = 0;  // bytes of frame_.data written
};

}  // namespace layerskip
