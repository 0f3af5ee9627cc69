// cpu::Attention (tiles) against cpu::AttentionPerQuery (one query at a time) on a prompt's prefill:
//   build/bin/layerskip-attention-bench [--tokens 256] [--heads 4] [--kv-heads 2] [--head-dim 64]
//                                       [--threads 1] [--rounds 7]
// Runs the two in turn (A B B A ...) on the same q and KV cache, each round timing one call of each in CPU
// seconds of the process (steadier than wall time on a shared machine) and in wall seconds, and prints the
// medians of the per-round ratios per-query / tiled with their min-max, and each one's median GFLOP per
// CPU-second.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "engine/util/thread_pool.h"
#include "kernels/attention.h"

namespace layerskip {
namespace {

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  int tokens = 256, heads = 4, kv_heads = 2, hd = 64, threads = 1, rounds = 7;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "usage: see the header of bench/attention_bench.cc (%s needs a value)\n", a.c_str());
      return 2;
    }
    const int v = std::atoi(argv[++i]);
    if (a == "--tokens") tokens = v;
    else if (a == "--heads") heads = v;
    else if (a == "--kv-heads") kv_heads = v;
    else if (a == "--head-dim") hd = v;
    else if (a == "--threads") threads = v;
    else if (a == "--rounds") rounds = v;
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench/attention_bench.cc)\n", a.c_str());
      return 2;
    }
  }
  if (tokens < 1 || kv_heads < 1 || heads < kv_heads || heads % kv_heads != 0 || hd < 1 || threads < 1 || rounds < 1) {
    std::fprintf(stderr, "need tokens, head-dim, threads, rounds >= 1 and heads a multiple of kv-heads\n");
    return 2;
  }
  const size_t kv = static_cast<size_t>(tokens) * kv_heads * hd, qn = static_cast<size_t>(tokens) * heads * hd;
  std::vector<float> k(kv), v(kv), q(qn), a(qn), b(qn);
  uint32_t s = 12345;
  auto next = [&] { return (s = s * 1664525u + 1013904223u) / 4294967296.0f - 0.5f; };
  for (float& x : k) x = next();
  for (float& x : v) x = next();
  for (float& x : q) x = next();
  const cpu::KvLayerView view{k.data(), v.data(), static_cast<int64_t>(kv), kv_heads, hd};
  std::vector<int> slots(tokens, 0), pos(tokens);
  for (int i = 0; i < tokens; ++i) pos[i] = i;
  ThreadPool pool(threads);
  double wall = 0;  // of the last call
  auto time = [&](bool tiled) {
    const double c0 = CpuSeconds();
    const auto w0 = std::chrono::steady_clock::now();
    if (tiled) cpu::Attention(q.data(), tokens, slots.data(), pos.data(), heads, view, a.data(), &pool);
    else cpu::AttentionPerQuery(q.data(), tokens, slots.data(), pos.data(), heads, view, b.data(), &pool);
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    return CpuSeconds() - c0;
  };
  time(true), time(false);  // warm-up
  std::vector<double> tiled, per_query, ratio, wall_ratio, tiled_wall;
  for (int r = 0; r < rounds; ++r) {
    const bool tiled_first = r % 2 == 0;
    const double first = time(tiled_first), first_wall = wall, second = time(!tiled_first);
    tiled.push_back(tiled_first ? first : second);
    per_query.push_back(tiled_first ? second : first);
    ratio.push_back(per_query.back() / tiled.back());
    wall_ratio.push_back(tiled_first ? wall / first_wall : first_wall / wall);
    tiled_wall.push_back(tiled_first ? first_wall : wall);
  }
  if (std::memcmp(a.data(), b.data(), qn * sizeof(float)) != 0) {
    std::printf("MISMATCH: tiled and per-query outputs differ\n");
    return 1;
  }
  const double flop = 4.0 * heads * hd * (static_cast<double>(tokens) * (tokens + 1) / 2);  // QK and PV
  std::printf("attention prefill: %d tokens, %d heads over %d KV heads, head_dim %d, %d threads, %d rounds\n", tokens,
              heads, kv_heads, hd, threads, rounds);
  std::printf("tiled: %.2f ms CPU (%.1f GFLOP per CPU-second); per-query: %.2f ms CPU (%.1f)\n",
              1e3 * Median(tiled), flop / Median(tiled) / 1e9, 1e3 * Median(per_query), flop / Median(per_query) / 1e9);
  std::printf("per-query / tiled CPU time: median %.2f (min %.2f, max %.2f); outputs bitwise equal\n", Median(ratio),
              *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  std::printf("tiled: %.2f ms wall; per-query / tiled wall time: median %.2f (min %.2f, max %.2f)\n",
              1e3 * Median(tiled_wall), Median(wall_ratio),
              *std::min_element(wall_ratio.begin(), wall_ratio.end()),
              *std::max_element(wall_ratio.begin(), wall_ratio.end()));
  return 0;
}

}  // namespace
}  // namespace layerskip

int main(int argc, char** argv) { return layerskip::Main(argc, argv); }
