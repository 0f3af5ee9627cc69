#include "engine/util/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

namespace layerskip {
namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

// Spins with pause instructions until done() or `micros` have passed (the clock is read every 16
// pauses); returns done().
template <typename Done>
bool SpinUntil(Done done, double micros) {
  const Clock::time_point start = Clock::now();
  for (;;) {
    for (int i = 0; i < 16; ++i) {
      if (done()) return true;
      _mm_pause();
    }
    if (MicrosSince(start) > micros) return done();
  }
}

constexpr uint64_t Pack(uint64_t generation, uint64_t pieces, uint64_t next) { return generation << 32 | pieces << 16 | next; }
constexpr uint64_t Generation(uint64_t s) { return s >> 32; }
constexpr int64_t Pieces(uint64_t s) { return static_cast<int64_t>((s >> 16) & 0xffff); }
constexpr int64_t Next(uint64_t s) { return static_cast<int64_t>(s & 0xffff); }

// Contention control: over windows of kWindowLoops loops, if the caller spent more than kStallFraction
// of the loops' time waiting for pieces that workers held, the loops of the next solo period run on the
// caller alone. The period starts at kMinSoloMicros and doubles (up to kMaxSoloMicros) while stalls keep
// coming within kCleanMicros of running without one.
constexpr int kWindowLoops = 32;
constexpr double kStallFraction = 0.3;
constexpr double kMinSoloMicros = 50e3, kMaxSoloMicros = 800e3, kCleanMicros = 200e3;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = DefaultThreadCount();
  num_threads_ = num_threads;
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  wake_.fetch_add(1);
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::RunPieces(uint64_t generation) {
  int ran = 0;
  uint64_t s = state_.load(std::memory_order_acquire);
  while (Generation(s) == generation && Next(s) < Pieces(s)) {
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // The claim succeeded, so this loop is still current and fn_ is its function until done_ counts it.
    (*fn_)(Next(s));
    ++ran;
    if (done_.fetch_add(1) + 1 == Pieces(s) && caller_asleep_.load())  // seq_cst: see Run's wait
      done_.notify_one();
    s = state_.load(std::memory_order_acquire);
  }
  return ran;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = Generation(state_.load());
  for (;;) {
    auto has_work = [&] {
      const uint64_t s = state_.load(std::memory_order_acquire);
      return stop_.load(std::memory_order_relaxed) || (Generation(s) != seen && Next(s) < Pieces(s));
    };
    if (!SpinUntil(has_work, kSpinMicros)) {
      const int w = wake_.load();
      sleepers_.fetch_add(1);
      if (!has_work()) wake_.wait(w);
      sleepers_.fetch_sub(1);
      continue;  // woken: spin again (a wake may be spurious or for a loop already finished)
    }
    if (stop_.load()) return;
    const uint64_t s = state_.load(std::memory_order_acquire);
    seen = Generation(s);
    RunPieces(seen);
  }
}

bool ThreadPool::Stalled(double loop_micros, double wait_micros) {
  window_loop_us_ += loop_micros;
  window_wait_us_ += wait_micros;
  if (++window_loops_ < kWindowLoops) return false;
  const bool stalled = window_wait_us_ > kStallFraction * window_loop_us_;
  const double per_loop = window_loop_us_ / window_loops_;
  if (stalled) {
    solo_us_ = clean_us_ < kCleanMicros ? std::min(kMaxSoloMicros, solo_us_ * 2) : kMinSoloMicros;
    solo_left_ = std::max<int64_t>(kWindowLoops, static_cast<int64_t>(solo_us_ / std::max(1.0, per_loop)));
    clean_us_ = 0;
  } else {
    clean_us_ += window_loop_us_;
  }
  window_loop_us_ = window_wait_us_ = 0;
  window_loops_ = 0;
  return stalled;
}

void ThreadPool::Run(int64_t pieces, const std::function<void(int64_t)>* fn) {
  if (solo_left_ > 0) {  // contended: the caller alone (the workers fall asleep)
    --solo_left_;
    solo_loops_.fetch_add(1, std::memory_order_relaxed);
    for (int64_t i = 0; i < pieces; ++i) (*fn)(i);
    return;
  }
  const Clock::time_point start = Clock::now();
  fn_ = fn;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t generation = Generation(state_.load()) + 1;
  state_.store(Pack(generation, static_cast<uint64_t>(pieces), 0));  // seq_cst: publishes fn_ and done_
  wake_.fetch_add(1);
  if (sleepers_.load() > 0) wake_.notify_all();
  RunPieces(generation);
  if (done_.load(std::memory_order_acquire) == pieces) {
    Stalled(MicrosSince(start), 0);
    return;
  }
  // Every piece is claimed; some are still running on workers.
  const Clock::time_point wait_start = Clock::now();
  auto finished = [&] { return done_.load(std::memory_order_acquire) == pieces; };
  if (!SpinUntil(finished, kSpinMicros)) {
    caller_asleep_.store(true);
    for (int d = done_.load(); d != pieces; d = done_.load()) done_.wait(d);
    caller_asleep_.store(false);
  }
  Stalled(MicrosSince(start), MicrosSince(wait_start));
}

void ThreadPool::ParallelTasks(int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  if (num_threads_ == 1 || tasks == 1) {
    for (int64_t i = 0; i < tasks; ++i) fn(i);
    return;
  }
  if (tasks <= 0xffff) return Run(tasks, &fn);
  ParallelFor(tasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  const int64_t pieces = std::min<int64_t>(units, static_cast<int64_t>(num_threads_) * kPiecesPerThread);
  if (num_threads_ == 1 || pieces <= 1) {
    fn(0, n);
    return;
  }
  // Piece i covers units [i * units / pieces, (i + 1) * units / pieces).
  const std::function<void(int64_t)> piece = [&](int64_t i) {
    const int64_t begin = std::min(n, i * units / pieces * grain), end = std::min(n, (i + 1) * units / pieces * grain);
    if (begin < end) fn(begin, end);
  };
  Run(pieces, &piece);
}

}  // namespace layerskip
