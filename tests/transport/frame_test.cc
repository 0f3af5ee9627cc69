// The data link's frame codec (transport/frame.h): header checks before allocation, reassembly across
// arbitrary chunk boundaries.
#include "transport/frame.h"

#include <gtest/gtest.h>

#include <cstring>

namespace layerskip {
namespace {

std::vector<uint8_t> Wire(uint64_t round, int rows, int hidden, float base) {
  FrameHeader h;
  h.round = round;
  h.step = 0;
  h.rows = rows;
  h.hidden = hidden;
  const auto head = EncodeFrameHeader(h);
  std::vector<uint8_t> out(head.begin(), head.end());
  for (int i = 0; i < rows * hidden; ++i) {
    const float v = base + static_cast<float>(i);
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    out.insert(out.end(), b, b + 4);
  }
  return out;
}

TEST(FrameTest, HeaderRoundTrips) {
  FrameHeader h;
  h.round = 0x123456789ULL;
  h.step = 7;
  h.rows = 5;
  h.hidden = 64;
  const auto bytes = EncodeFrameHeader(h);
  absl::StatusOr<FrameHeader> back = ParseFrameHeader(bytes.data(), FrameLimits{64, 8});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->round, h.round);
  EXPECT_EQ(back->step, 7u);
  EXPECT_EQ(back->rows, 5);
  EXPECT_EQ(back->hidden, 64);
}

TEST(FrameTest, RefusesHeadersOutsideTheShardsLimits) {
  const FrameLimits limits{64, 8};
  auto parse = [&](FrameHeader h) { return ParseFrameHeader(EncodeFrameHeader(h).data(), limits).status(); };
  FrameHeader h;
  h.hidden = 64;
  h.rows = 9;  // more rows than the largest batch
  EXPECT_EQ(parse(h).code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(parse(h).message().find("rows"), std::string::npos);
  h.rows = -1;
  EXPECT_EQ(parse(h).code(), absl::StatusCode::kDataLoss);
  h.rows = 1;
  h.hidden = 63;  // another model's width
  EXPECT_NE(parse(h).message().find("hidden"), std::string::npos);
  h.hidden = 16384;
  h.rows = 16384;  // the 1 GB header of issue 12
  EXPECT_EQ(parse(h).code(), absl::StatusCode::kDataLoss);
  h.rows = 1;
  h.hidden = 64;
  EXPECT_TRUE(parse(h).ok());
  EXPECT_EQ(ParseFrameHeader(EncodeFrameHeader(h).data(), FrameLimits{0, 0}).status().code(),
            absl::StatusCode::kDataLoss);  // no shard loaded: nothing is accepted
  auto bytes = EncodeFrameHeader(h);
  bytes[0] ^= 1;  // magic
  EXPECT_NE(ParseFrameHeader(bytes.data(), limits).status().message().find("magic"), std::string::npos);
  bytes = EncodeFrameHeader(h);
  bytes[4] = 1;  // version 1: the unauthenticated protocol
  EXPECT_NE(ParseFrameHeader(bytes.data(), limits).status().message().find("version"), std::string::npos);
}

TEST(FrameTest, DecoderReassemblesAcrossEveryChunkSize) {
  std::vector<uint8_t> stream = Wire(1, 3, 4, 0.0f);
  const std::vector<uint8_t> second = Wire(2, 0, 4, 0.0f);  // an empty frame
  const std::vector<uint8_t> third = Wire(3, 2, 4, 100.0f);
  stream.insert(stream.end(), second.begin(), second.end());
  stream.insert(stream.end(), third.begin(), third.end());
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    FrameDecoder d(FrameLimits{4, 3});
    std::vector<Frame> out;
    for (size_t at = 0; at < stream.size(); at += chunk)
      ASSERT_TRUE(d.Feed(stream.data() + at, std::min(chunk, stream.size() - at), &out).ok());
    ASSERT_EQ(out.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(out[0].header.round, 1u);
    ASSERT_EQ(out[0].data.size(), 12u);
    EXPECT_EQ(out[0].data[11], 11.0f);
    EXPECT_TRUE(out[1].data.empty());
    EXPECT_EQ(out[2].data[1], 101.0f);
    EXPECT_EQ(d.partial_bytes(), 0u);
  }
}

TEST(FrameTest, DeviceReferencesOnlyWhereWiredForIpc) {
  FrameHeader h;
  h.round = 9;
  h.rows = 3;
  h.hidden = 4;
  const auto head = EncodeFrameHeader(h, kFrameInDevice);
  std::vector<uint8_t> stream(head.begin(), head.end());
  for (size_t i = 0; i < kDeviceRefBytes; ++i) stream.push_back(static_cast<uint8_t>(i));
  std::vector<Frame> out;
  FrameDecoder plain(FrameLimits{4, 3});
  EXPECT_NE(plain.Feed(stream.data(), stream.size(), &out).message().find("CUDA IPC"), std::string::npos);
  FrameDecoder ipc(FrameLimits{4, 3, true});
  ASSERT_TRUE(ipc.Feed(stream.data(), stream.size(), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].in_device);
  EXPECT_TRUE(out[0].data.empty());  // the 80 bytes are the reference, not rows
  EXPECT_EQ(out[0].device_ref[79], 79);
  EXPECT_EQ(ipc.partial_bytes(), 0u);
  auto bad = EncodeFrameHeader(h, 2);  // unknown flag
  EXPECT_NE(ParseFrameHeader(bad.data(), FrameLimits{4, 3, true}).status().message().find("flags"), std::string::npos);
}

TEST(FrameTest, DecoderFailsOnGarbageAndStaysFailed) {
  FrameDecoder d(FrameLimits{4, 3});
  std::vector<Frame> out;
  std::vector<uint8_t> garbage(64, 0xab);
  EXPECT_EQ(d.Feed(garbage.data(), garbage.size(), &out).code(), absl::StatusCode::kDataLoss);
  const std::vector<uint8_t> good = Wire(1, 1, 4, 0.0f);
  EXPECT_FALSE(d.Feed(good.data(), good.size(), &out).ok());
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace layerskip
