#pragma once
// A fixed pool of worker threads running one parallel loop at a time. The calling thread takes part.
//
// A loop is cut into pieces that the caller and the workers claim from a shared counter, so a thread that
// is late (asleep, or descheduled by another process on its core) simply does fewer: the caller never
// waits for a piece nobody has started. Which thread computes a piece never changes the arithmetic done
// on it. Between loops, workers spin for a bounded time (kSpinMicros) and then sleep on a futex, so
// decode's hundreds of short loops per token find them awake while an idle pool costs no CPU.
// When loops keep waiting on a worker that holds a piece but is not running (a busy neighbour on its
// core), the pool runs the next loops on the caller alone for a while, then tries the workers again.
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "engine/util/cpu_budget.h"

namespace layerskip {

class ThreadPool {
 public:
  // num_threads <= 0: DefaultThreadCount() (the affinity mask and the cgroup CPU quota).
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over [0, n) cut into contiguous pieces whose bounds are multiples of `grain`
  // (except the last); up to kPiecesPerThread pieces per thread, claimed dynamically. Blocks until all
  // are done. Not re-entrant: one thread at a time may call it.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Calls fn(task) for every task in [0, tasks), each claimed by whichever thread is free. Blocks until
  // all are done.
  void ParallelTasks(int64_t tasks, const std::function<void(int64_t)>& fn);

  // Loops run so far on the caller alone because the workers were found stalled (tests, benchmarks).
  int64_t solo_loops() const { return solo_loops_.load(std::memory_order_relaxed); }

  static constexpr int kPiecesPerThread = 4;
  static constexpr int kSpinMicros = 50;

 private:
  void WorkerLoop();
  // Claims and runs pieces of the current loop until none is left; returns how many it ran.
  int RunPieces(uint64_t generation);
  void Run(int64_t pieces, const std::function<void(int64_t)>* fn);
  bool Stalled(double loop_micros, double wait_micros);

  int num_threads_;
  std::vector<std::thread> workers_;
  // state_: generation (high 32 bits) | pieces (16) | next unclaimed piece (16). A claim is a CAS on it,
  // so a worker can only claim a piece of the loop that is still current.
  std::atomic<uint64_t> state_{0};
  std::atomic<int> done_{0};            // pieces finished in the current loop
  std::atomic<int> wake_{0};            // bumped for every loop; workers sleep on it
  std::atomic<int> sleepers_{0};        // workers asleep (or about to be) on wake_
  std::atomic<bool> caller_asleep_{false};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t)>* fn_ = nullptr;  // the current loop's piece function
  // Contention control (caller only): loops left to run alone; stall statistics of the recent loops.
  int64_t solo_left_ = 0;
  double window_loop_us_ = 0, window_wait_us_ = 0, clean_us_ = 0, solo_us_ = 25e3;
  int window_loops_ = 0;
  std::atomic<int64_t> solo_loops_{0};
};

}  // namespace layerskip
