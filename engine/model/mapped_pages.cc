#include "engine/model/mapped_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace layerskip {
namespace {

size_t PageSize() {
  static const size_t page = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return page;
}

}  // namespace

void PageIn(const std::vector<std::pair<const uint8_t*, size_t>>& ranges, int threads) {
  const size_t page = PageSize();
  size_t total = 0;
  for (const auto& [p, n] : ranges) {
    if (n == 0) continue;
    const uintptr_t b = reinterpret_cast<uintptr_t>(p) / page * page;
    ::madvise(reinterpret_cast<void*>(b), reinterpret_cast<uintptr_t>(p) + n - b, MADV_WILLNEED);
    total += n;
  }
  // Thread i touches the bytes [i * total / T, (i + 1) * total / T) of the ranges laid end to end.
  const int t = std::clamp<int>(static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, threads)), total / (1 << 20) + 1)), 1, 64);
  std::atomic<uint64_t> sink{0};
  auto touch = [&](size_t lo, size_t hi) {
    uint64_t s = 0;
    size_t offset = 0;
    for (const auto& [p, n] : ranges) {
      const size_t a = std::max(lo, offset), e = std::min(hi, offset + n);
      for (size_t i = a; i < e; i += page) s += static_cast<const volatile uint8_t*>(p)[i - offset];
      if (a < e) s += static_cast<const volatile uint8_t*>(p)[e - 1 - offset];  // the last page
      offset += n;
      if (offset >= hi) break;
    }
    sink.fetch_add(s, std::memory_order_relaxed);
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(touch, total * i / t, total * (i + 1) / t);
  touch(0, total / t);
  for (auto& th : pool) th.join();
}

void ReleasePages(const uint8_t* begin, size_t size) {
  const size_t page = PageSize();
  const uintptr_t b = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(begin) + size) / page * page;
  if (b < e) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace layerskip
