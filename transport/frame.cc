#include "transport/frame.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

template <class T>
void Put(uint8_t*& p, T v) {
  std::memcpy(p, &v, sizeof(T));  // x86-64 / aarch64: little-endian
  p += sizeof(T);
}
template <class T>
T Get(const uint8_t*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

}  // namespace

std::array<uint8_t, kFrameHeaderBytes> EncodeFrameHeader(const FrameHeader& h, uint32_t flags) {
  std::array<uint8_t, kFrameHeaderBytes> out{};
  uint8_t* p = out.data();
  Put<uint32_t>(p, FrameHeader::kMagic);
  Put<uint32_t>(p, FrameHeader::kVersion);
  Put<uint64_t>(p, h.round);
  Put<uint32_t>(p, h.step);
  Put<int32_t>(p, h.rows);
  Put<int32_t>(p, h.hidden);
  Put<uint32_t>(p, flags);
  return out;
}

absl::StatusOr<FrameHeader> ParseFrameHeader(const uint8_t* bytes, const FrameLimits& limits, uint32_t* flags_out) {
  const uint8_t* p = bytes;
  const uint32_t magic = Get<uint32_t>(p), version = Get<uint32_t>(p);
  FrameHeader h;
  h.round = Get<uint64_t>(p);
  h.step = Get<uint32_t>(p);
  h.rows = Get<int32_t>(p);
  h.hidden = Get<int32_t>(p);
  const uint32_t flags = Get<uint32_t>(p);
  if (magic != FrameHeader::kMagic) return absl::DataLossError(absl::StrCat("frame: bad magic 0x", absl::Hex(magic)));
  if (version != FrameHeader::kVersion)
    return absl::DataLossError(absl::StrCat("frame: version ", version, ", this worker speaks ", FrameHeader::kVersion));
  if (flags != 0 && flags != kFrameInDevice) return absl::DataLossError(absl::StrCat("frame: unknown flags ", flags));
  if (flags == kFrameInDevice && !limits.device_frames)
    return absl::DataLossError("frame: rows in device memory, but this link is not wired for CUDA IPC");
  if (limits.hidden <= 0) return absl::DataLossError("frame: this stage has no shard loaded");
  if (h.hidden != limits.hidden)
    return absl::DataLossError(absl::StrCat("frame: hidden size ", h.hidden, ", this shard's is ", limits.hidden));
  if (h.rows < 0 || h.rows > limits.max_rows)
    return absl::DataLossError(absl::StrCat("frame: ", h.rows, " rows, outside [0, ", limits.max_rows, "]"));
  if (flags_out) *flags_out = flags;
  return h;
}

absl::Status FrameDecoder::Feed(const uint8_t* data, size_t n, std::vector<Frame>* out) {
  if (!failed_.ok()) return failed_;
  while (n > 0) {
    if (!in_payload_) {
      const size_t take = std::min(n, kFrameHeaderBytes - header_fill_);
      std::memcpy(header_ + header_fill_, data, take);
      header_fill_ += take;
      data += take;
      n -= take;
      if (header_fill_ < kFrameHeaderBytes) break;
      uint32_t flags = 0;
      absl::StatusOr<FrameHeader> h = ParseFrameHeader(header_, limits_, &flags);
      if (!h.ok()) {
        failed_ = h.status();
        return failed_;
      }
      frame_.header = *h;
      frame_.in_device = flags == kFrameInDevice;
      if (!frame_.in_device) frame_.data.assign(static_cast<size_t>(h->rows) * static_cast<size_t>(h->hidden), 0.0f);
      payload_fill_ = 0;
      in_payload_ = true;
    }
    uint8_t* dest = frame_.in_device ? frame_.device_ref.data() : reinterpret_cast<uint8_t*>(frame_.data.data());
    const size_t want = frame_.in_device ? kDeviceRefBytes : frame_.data.size() * sizeof(float);
    const size_t take = std::min(n, want - payload_fill_);
    if (take > 0) std::memcpy(dest + payload_fill_, data, take);
    payload_fill_ += take;
    data += take;
    n -= take;
    if (payload_fill_ == want) {
      out->push_back(std::move(frame_));
      frame_ = Frame();
      header_fill_ = payload_fill_ = 0;
      in_payload_ = false;
    }
  }
  return absl::OkStatus();
}

}  // namespace layerskip
