#pragma once
// The data plane between pipeline stages: stage i sends the activations of a round, [rows, hidden] f32,
// to stage i+1. One interface, two implementations chosen per cluster: TCP (CPU workers, tests) and NCCL
// send/recv (GPU workers; compiled when CUDA is found). The control plane (gRPC) names the round; the
// frame carries (round, step) so a receiver can match it to the request it serves.
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace layerskip {

// Header of one activation frame. On the wire (TCP, little-endian; transport/frame.h): magic, version,
// round, step, rows, hidden, reserved, then rows * hidden f32.
struct FrameHeader {
  static constexpr uint32_t kMagic = 0x4c534b46;  // "LSKF"
  static constexpr uint32_t kVersion = 2;         // 2: 32-byte header, links authenticated first
  uint64_t round = 0;  // the coordinator's micro-batch id, unique per cluster lifetime
  uint32_t step = 0;   // which transfer of the round (0: the verification rows)
  int32_t rows = 0;
  int32_t hidden = 0;
};

struct TransportStats {
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  int64_t frames_dropped = 0;   // stale frames discarded (rounds that were abandoned)
  int64_t links_accepted = 0;   // inbound links that passed the handshake
  int64_t links_rejected = 0;   // inbound connections closed in the handshake (stranger, wrong token or stage)
  int64_t frames_rejected = 0;  // links closed on a bad frame (header outside the shard's limits, garbage)
};

class ActivationTransport {
 public:
  virtual ~ActivationTransport() = default;

  // Sends x[rows, hidden] tagged (round, step) to the next stage. UNAVAILABLE when the link is down.
  virtual absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) = 0;

  // Receives the frame (round, step) from the previous stage: x becomes [rows, hidden]. Frames of other
  // rounds that arrive meanwhile are kept for their own receivers. DEADLINE_EXCEEDED at `deadline`,
  // CANCELLED as soon as cancelled() returns true (polled), INVALID_ARGUMENT when the frame's row count
  // or width is not the expected one (expected_rows < 0: any).
  virtual absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                            absl::Time deadline, const std::function<bool()>& cancelled) = 0;

  virtual TransportStats stats() const = 0;
};

}  // namespace layerskip
