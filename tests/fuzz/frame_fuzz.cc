// libFuzzer target for the data port's frame parsing (transport/frame.h), no sockets: the input's first
// 4 bytes pick the receiving shard's limits (and whether device references are accepted) and the chunking,
// the rest is the byte stream a link delivers.
// Checks: no crash, no allocation beyond the limits, every frame out within them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "transport/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  layerskip::FrameLimits limits;
  limits.hidden = 1 + (data[0] % 64);     // small widths keep each run fast
  limits.max_rows = data[1] % 128;
  const size_t chunk = 1 + data[2] % 97;  // how the stream is split across recv() calls
  const bool header_only = data[3] & 1;
  limits.device_frames = data[3] & 2;
  data += 4;
  size -= 4;
  if (header_only) {
    if (size >= layerskip::kFrameHeaderBytes) {
      auto h = layerskip::ParseFrameHeader(data, limits);
      if (h.ok() && (h->rows < 0 || h->rows > limits.max_rows || h->hidden != limits.hidden)) std::abort();
    }
    return 0;
  }
  layerskip::FrameDecoder decoder(limits);
  std::vector<layerskip::Frame> frames;
  for (size_t at = 0; at < size; at += chunk) {
    const size_t n = size - at < chunk ? size - at : chunk;
    if (!decoder.Feed(data + at, n, &frames).ok()) break;
  }
  for (const layerskip::Frame& f : frames) {
    if (f.header.rows < 0 || f.header.rows > limits.max_rows || f.header.hidden != limits.hidden) std::abort();
    if (f.in_device ? (!limits.device_frames || !f.data.empty())
                    : f.data.size() != static_cast<size_t>(f.header.rows) * static_cast<size_t>(f.header.hidden))
      std::abort();
  }
  return 0;
}
