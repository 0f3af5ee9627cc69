// The machine's f32 FMA ceiling (the roof for compute-bound batched decoding, docs/service.md):
// 12 independent 8-wide FMA chains per thread, 1 and N threads.
//   build/bin/layerskip-fma-peak [--threads N]
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

float Chains(long iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + static_cast<float>(i) * 1e-3f);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  float s = 0.0f;
  for (int i = 0; i < 12; ++i) s += _mm256_cvtss_f32(a[i]);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int max_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
    std::printf("usage: layerskip-fma-peak [--threads N]\n  the machine's peak FMA throughput, 1 thread and N (default: all)\n");
    return 0;
  }
  if (argc == 3 && !std::strcmp(argv[1], "--threads")) max_threads = std::atoi(argv[2]);
  if (max_threads < 1 || argc == 2 || argc > 3) {
    std::fprintf(stderr, "usage: layerskip-fma-peak [--threads N]\n");
    return 2;
  }
  const long iters = 100000000;
  for (int threads : {1, max_threads}) {
    std::vector<float> sink(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&sink, t, iters] { sink[t] = Chains(iters); });
    for (auto& t : pool) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d thread(s): %.1f GFLOP/s f32 FMA (checksum %.3f)\n", threads, threads * iters * 12.0 * 16 / s / 1e9,
                sink[0]);
    if (max_threads == 1) break;
  }
  return 0;
}
