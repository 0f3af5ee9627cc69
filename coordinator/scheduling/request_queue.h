#pragma once
// The bounded queue of requests waiting for a slot, in arrival order. Not synchronised: the EngineLoop
// guards it with its own mutex.
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "coordinator/scheduling/request.h"

namespace layerskip::coordinator {

class RequestQueue {
 public:
  explicit RequestQueue(size_t capacity) : capacity_(capacity) {}

  // Appends `r`; false (and nothing queued) when the queue already holds `capacity` requests.
  bool TryPush(std::shared_ptr<Request> r);
  bool empty() const { return q_.empty(); }
  size_t size() const { return q_.size(); }
  size_t capacity() const { return capacity_; }
  const std::shared_ptr<Request>& front() const { return q_.front(); }
  std::shared_ptr<Request> PopFront();
  // Removes and returns every queued request for which `pred` is true (cancelled, past its deadline).
  std::vector<std::shared_ptr<Request>> RemoveIf(const std::function<bool(const Request&)>& pred);
  // Removes and returns everything.
  std::vector<std::shared_ptr<Request>> Clear();

 private:
  size_t capacity_;
  std::deque<std::shared_ptr<Request>> q_;
};

}  // namespace layerskip::coordinator
