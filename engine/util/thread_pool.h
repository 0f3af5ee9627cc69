#pragma once
// A fixed pool of worker threads running one parallel loop at a time. The calling thread takes part.
// Work is split statically, so which thread computes an item never changes the arithmetic done on it.
// Between loops, workers spin briefly before sleeping: decode runs hundreds of short loops per token.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace layerskip {

class ThreadPool {
 public:
  // num_threads <= 0: std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over [0, n) split into one contiguous chunk per thread; chunk bounds are
  // multiples of `grain` (except the last). Blocks until all chunks are done. Not re-entrant: one thread
  // at a time may call it.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);
  void RunChunk(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // The current loop (written before generation_ is bumped, read after it is seen).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
};

}  // namespace layerskip
