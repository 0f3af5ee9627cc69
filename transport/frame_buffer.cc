#include "transport/frame_buffer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace layerskip {

void FrameBuffer::Put(Frame frame) {
  std::lock_guard<std::mutex> lock(mu_);
  if (frames_.size() >= kMaxFrames) {  // abandoned rounds: drop the oldest
    frames_.erase(frames_.begin());
    ++dropped_;
  }
  frames_[{frame.header.round, frame.header.step}] = std::move(frame);
  cv_.notify_all();
}

absl::Status FrameBuffer::Take(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                               absl::Time deadline, const std::function<bool()>& cancelled,
                               const std::function<absl::Status()>& broken) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto key = std::make_pair(round, step);
  for (;;) {
    auto it = frames_.find(key);
    if (it != frames_.end()) {
      Frame f = std::move(it->second);
      frames_.erase(it);
      lock.unlock();
      if (f.header.hidden != hidden || (expected_rows >= 0 && f.header.rows != expected_rows))
        return absl::DataLossError(absl::StrCat("round ", round, ": received [", f.header.rows, ", ", f.header.hidden,
                                                "] activations, expected [", expected_rows, ", ", hidden, "]"));
      *x = std::move(f.data);
      return absl::OkStatus();
    }
    if (closed_) return absl::CancelledError("transport shutting down");
    if (cancelled && cancelled()) return absl::CancelledError(absl::StrCat("round ", round, " cancelled while waiting for activations"));
    if (broken) {
      if (absl::Status b = broken(); !b.ok()) return b;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline)
      return absl::DeadlineExceededError(absl::StrCat("round ", round, ": no activations from the previous stage"));
    cv_.wait_for(lock, absl::ToChronoNanoseconds(std::min(deadline - now, absl::Milliseconds(20))));
  }
}

void FrameBuffer::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  frames_.clear();
}

void FrameBuffer::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

int64_t FrameBuffer::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

}  // namespace layerskip
