#pragma once
// Frames received on a link, waiting for their Recv: keyed by (round, step), so the Verify handlers of
// several steps in flight each take their own frame whatever the arrival order. Bounded: beyond 64 frames
// the oldest (an abandoned round's) is dropped and counted. Shared by the TCP and NCCL transports.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "transport/frame.h"

namespace layerskip {

class FrameBuffer {
 public:
  static constexpr size_t kMaxFrames = 64;

  // Adds a frame (replacing one with the same key) and wakes the waiters.
  void Put(Frame frame);
  // Waits for (round, step): OK with x = [rows, hidden]; DATA_LOSS when its shape is not
  // [expected_rows (< 0: any), hidden]; DEADLINE_EXCEEDED at `deadline`; CANCELLED when cancelled() (polled
  // every 20 ms) or Close(); `broken()` (polled likewise, may be empty) ends the wait with its status.
  absl::Status Take(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled,
                    const std::function<absl::Status()>& broken = nullptr);
  void Clear();
  void Close();  // every waiter ends with CANCELLED
  int64_t dropped() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<uint64_t, uint32_t>, Frame> frames_;
  bool closed_ = false;
  int64_t dropped_ = 0;
};

}  // namespace layerskip
