#include "coordinator/scheduling/request_queue.h"

namespace layerskip::coordinator {

bool RequestQueue::TryPush(std::shared_ptr<Request> r) {
  if (q_.size() >= capacity_) return false;
  q_.push_back(std::move(r));
  return true;
}

std::shared_ptr<Request> RequestQueue::PopFront() {
  std::shared_ptr<Request> r = std::move(q_.front());
  q_.pop_front();
  return r;
}

std::vector<std::shared_ptr<Request>> RequestQueue::RemoveIf(const std::function<bool(const Request&)>& pred) {
  std::vector<std::shared_ptr<Request>> removed;
  for (auto it = q_.begin(); it != q_.end();) {
    if (pred(**it)) {
      removed.push_back(std::move(*it));
      it = q_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

std::vector<std::shared_ptr<Request>> RequestQueue::Clear() {
  std::vector<std::shared_ptr<Request>> all(q_.begin(), q_.end());
  q_.clear();
  return all;
}

}  // namespace layerskip::coordinator
