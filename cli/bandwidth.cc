#include "cli/bandwidth.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <functional>
#include <vector>

#include <sys/mman.h>

namespace layerskip::cli {

double MeasureReadBandwidth(ThreadPool* pool, size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  // The same page advice as the weights get (engine/model/weights.cc), so both see the same TLB.
  void* mem = ::mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 0.0;
  ::madvise(mem, n * sizeof(float), MADV_HUGEPAGE);
  std::unique_ptr<float, std::function<void(float*)>> buf(static_cast<float*>(mem),
                                                          [bytes = n * sizeof(float)](float* p) { ::munmap(p, bytes); });
  pool->ParallelFor(static_cast<int64_t>(n), 4096, [&](int64_t b, int64_t e) {
    std::fill(buf.get() + b, buf.get() + e, 1.0f);
  });
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool->ParallelFor(static_cast<int64_t>(n), 4096, [&](int64_t b, int64_t e) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      int64_t i = b;
      for (; i + 32 <= e; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf.get() + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf.get() + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf.get() + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf.get() + i + 24));
      }
      __m256 sum = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      __asm__ volatile("" : : "x"(sum));  // keep the reads
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(static_cast<double>(n * sizeof(float)) / dt);
  }
  // The median pass: decode is timed as an average over many steps, so the probe is not its best moment.
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace layerskip::cli
