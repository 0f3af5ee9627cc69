#pragma once
// The activation frame on a data link, as bytes: a fixed 32-byte header (little-endian: magic, version,
// round, step, rows, hidden, flags) followed by rows * hidden f32, or, with flags = kFrameInDevice (the CUDA
// IPC transport), by a 80-byte reference to the rows in the sender's device memory. Parsing is pure (no sockets), so the
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
inline constexpr uint32_t kFrameInDevice = 1;     // flags: the rows stay in the sender's device memory
inline constexpr size_t kDeviceRefBytes = 80;     // cudaIpcMemHandle_t (64), offset (u64), sequence (u64)

// What a receiver accepts: rows in [0, max_rows] of exactly `hidden` floats. hidden 0: nothing (no shard).
// device_frames: kFrameInDevice frames too (only a receiver wired for CUDA IPC).
struct FrameLimits {
  int hidden = 0;
  int max_rows = 0;
  bool device_frames = false;
};

// The 32 header bytes of h.
std::array<uint8_t, kFrameHeaderBytes> EncodeFrameHeader(const FrameHeader& h, uint32_t flags = 0);

// Parses 32 header bytes. DATA_LOSS naming the field when the magic or version is wrong, rows is outside
// [0, limits.max_rows], hidden != limits.hidden, or the flags are unknown or not accepted. *flags (may be
// null) gets the flags.
absl::StatusOr<FrameHeader> ParseFrameHeader(const uint8_t* bytes, const FrameLimits& limits, uint32_t* flags = nullptr);

// One received frame: header and [rows, hidden] floats; or, in_device, the reference to them (data empty
// until the receiver copies the rows out of the sender's device memory).
struct Frame {
  FrameHeader header;
  std::vector<float> data;
  bool in_device = false;
  std::array<uint8_t, kDeviceRefBytes> device_ref{};
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
