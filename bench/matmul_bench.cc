// cpu::Matmul alone on the matrices of one decode step of a model shape (all layers + LM head, distinct
// random weights, so a step streams them from memory as the engine does), for n tokens at once:
//   build/bin/layerskip-matmul-bench [--shape llama3.2-1b|llama3-8b|tiny] [--n 16] [--steps 3]
//                                     [--threads 2] [--dtype bf16|f32|int8] [--layers L] [--check] [--hot ROWS]
//                                     [--no-head] [--mapped]
// --no-head leaves out the LM head (a prefill computes it for the last token only, so without it the
// step is the layers' matrices as a prefill runs them). --mapped reads bf16/f32 weights from a read-only
// file mapping of 4 KiB pages, as the engine reads a checkpoint in place (else 2 MiB pages where offered).
// Prints GFLOP/s per matrix kind and for the whole step (best of --steps). --check also verifies batch
// invariance: every row of the n-token product must equal, bitwise, the 1-token product of that row.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <ctime>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "engine/model/quantize_int8.h"
#include "engine/model/weights.h"
#include "engine/util/bf16.h"
#include "engine/util/thread_pool.h"
#include "kernels/matmul.h"

namespace layerskip {
namespace {

struct Shape {
  int64_t D, F, Q, KV, V, L;  // hidden, intermediate, q width, k/v width, vocab, layers
};

Shape GetShape(const std::string& name) {
  if (name == "llama3-8b") return {4096, 14336, 4096, 1024, 128256, 32};
  if (name == "tiny") return {256, 768, 256, 128, 4096, 8};
  return {2048, 8192, 2048, 512, 128256, 16};
}

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
float Uniform(uint64_t seed) { return static_cast<float>(Mix(seed) >> 40) / 16777216.0f * 2.0f - 1.0f; }

std::unique_ptr<Matrix> RandomMatrix(WeightType type, int64_t rows, int64_t cols, uint64_t seed) {
  if (type == WeightType::kInt8)  // the same values as f32, quantised (engine/model/quantize_int8.h)
    return QuantizeInt8(rows, cols, [&](int64_t r, float* out) {
      for (int64_t c = 0; c < cols; ++c) out[c] = Uniform(seed * 0x9e3779b97f4a7c15ull + r * cols + c) / 32.0f;
    }, 2);
  auto m = std::make_unique<Matrix>(type, rows, cols);
  const int64_t count = rows * cols;
  const float scale = 1.0f / 32.0f;
  if (type == WeightType::kBF16) {
    uint16_t* p = static_cast<uint16_t*>(m->data());
    for (int64_t i = 0; i < count; ++i) p[i] = F32ToBf16(Uniform(seed * 0x9e3779b97f4a7c15ull + i) * scale);
  } else {
    float* p = static_cast<float*>(m->data());
    for (int64_t i = 0; i < count; ++i) p[i] = Uniform(seed * 0x9e3779b97f4a7c15ull + i) * scale;
  }
  return m;
}

// The same matrix read in place from a private read-only mapping of a memfd (4 KiB pages, like a checkpoint's
// page-cache mapping); exits on failure.
std::unique_ptr<Matrix> Mapped(std::unique_ptr<Matrix> m) {
  if (m->type() == WeightType::kInt8) return m;
  const size_t bytes = m->bytes();
  const int fd = memfd_create("matmul-bench", 0);
  if (fd < 0 || ::write(fd, m->data(), bytes) != static_cast<ssize_t>(bytes)) {
    std::perror("memfd");
    std::exit(1);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  std::shared_ptr<const void> owner(p, [bytes](const void* q) { ::munmap(const_cast<void*>(q), bytes); });
  return std::make_unique<Matrix>(m->type(), m->rows(), m->cols(), p, std::move(owner));
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Kind {
  const char* name = "";
  std::vector<std::unique_ptr<Matrix>> mats;
  double best_seconds = 1e30;
};

// Bitwise batch invariance of one matrix: y[n, M] against n separate 1-token products.
bool CheckInvariance(const Matrix& w, int64_t n, ThreadPool* pool) {
  const int64_t K = w.cols(), M = w.rows();
  std::vector<float> x(n * K), y(n * M), y1(M);
  for (int64_t i = 0; i < n * K; ++i) x[i] = Uniform(777 + i);
  cpu::Matmul(x.data(), n, w, y.data(), pool);
  for (int64_t t = 0; t < n; ++t) {
    cpu::Matmul(x.data() + t * K, 1, w, y1.data(), nullptr);
    if (std::memcmp(y1.data(), y.data() + t * M, sizeof(float) * M) != 0) {
      std::printf("MISMATCH: [%lld, %lld] n=%lld token %lld\n", static_cast<long long>(M), static_cast<long long>(K),
                  static_cast<long long>(n), static_cast<long long>(t));
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  std::string shape_name = "llama3.2-1b";
  int64_t n = 16, steps = 3, threads = 2, layers = -1, hot_rows = 0;
  WeightType type = WeightType::kBF16;
  bool check = false, head = true, mapped = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(2);
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: layerskip-matmul-bench [--shape llama3.2-1b|llama3-8b|tiny] [--n 16] [--steps 3] [--threads 2]\n"
          "                              [--dtype bf16|f32|int8] [--layers L] [--check] [--hot ROWS] [--no-head] [--mapped]\n"
          "  cpu::Matmul on one decode step's matrices for n tokens: GFLOP/s per matrix kind and per step\n"
          "  (best of --steps); --check verifies batch invariance row by row\n");
      return 0;
    }
    if (a == "--shape") shape_name = next();
    else if (a == "--n") n = std::atoll(next().c_str());
    else if (a == "--steps") steps = std::atoll(next().c_str());
    else if (a == "--threads") threads = std::atoll(next().c_str());
    else if (a == "--layers") layers = std::atoll(next().c_str());
    else if (a == "--dtype") {
      const std::string d = next();
      type = d == "f32" ? WeightType::kF32 : d == "int8" ? WeightType::kInt8 : WeightType::kBF16;
    }
    else if (a == "--check") check = true;
    else if (a == "--hot") hot_rows = std::atoll(next().c_str());
    else if (a == "--no-head") head = false;
    else if (a == "--mapped") mapped = true;
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench/matmul_bench.cc)\n", a.c_str());
      return 2;
    }
  }
  ThreadPool pool(static_cast<int>(threads));
  if (check) {
    bool ok = true;
    for (int64_t nn : {2, 3, 4, 5, 6, 7, 9, 16, 17, 33})
      for (auto [M, K] : std::vector<std::pair<int64_t, int64_t>>{{2048, 2048}, {512, 2048}, {37, 100}, {101, 8192},
                                                                   {13, 16}, {67, 7}, {1000, 40}})
        for (WeightType t : {WeightType::kBF16, WeightType::kF32})
          ok &= CheckInvariance(*RandomMatrix(t, M, K, M * 31 + K), nn, &pool);
    std::printf("invariance check: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  }

  if (hot_rows > 0) {  // kernel efficiency alone: one L2-resident [hot_rows, 2048] matrix, many times
    auto m = RandomMatrix(type, hot_rows, 2048, 5);
    std::vector<float> x(n * 2048), y(n * hot_rows);
    for (size_t i = 0; i < x.size(); ++i) x[i] = Uniform(99 + i);
    double best = 1e30, best_cpu = 1e30;
    for (int64_t step = 0; step < steps; ++step) {
      const double c0 = CpuSeconds();
      const auto t0 = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 200; ++rep) cpu::Matmul(x.data(), n, *m, y.data(), &pool);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 200);
      best_cpu = std::min(best_cpu, (CpuSeconds() - c0) / 200);
    }
    const double flop = 2.0 * hot_rows * 2048 * n;
    std::printf("hot [%lld x 2048] n=%lld: %.1f us, %.1f GFLOP/s; %.1f GFLOP per CPU-second\n",
                static_cast<long long>(hot_rows), static_cast<long long>(n), best * 1e6, flop / best / 1e9,
                flop / best_cpu / 1e9);
    return 0;
  }
  const Shape s = GetShape(shape_name);
  const int64_t L = layers > 0 ? layers : s.L;
  const char* names[8] = {"q", "k", "v", "o", "gate", "up", "down", "lm_head"};
  const int num_kinds = head ? 8 : 7;
  std::vector<Kind> kinds(num_kinds);
  for (int k = 0; k < num_kinds; ++k) kinds[k].name = names[k];
  const int64_t dims[8][2] = {{s.Q, s.D}, {s.KV, s.D}, {s.KV, s.D}, {s.D, s.Q}, {s.F, s.D}, {s.F, s.D}, {s.D, s.F}, {s.V, s.D}};
  std::fprintf(stderr, "generating weights...\n");
  for (int k = 0; k < num_kinds; ++k)
    for (int64_t l = 0; l < (k == 7 ? 1 : L); ++l) {
      auto m = RandomMatrix(type, dims[k][0], dims[k][1], k * 1000 + l + 1);
      kinds[k].mats.push_back(mapped ? Mapped(std::move(m)) : std::move(m));
    }
  std::vector<float> x(n * std::max(s.F, s.D)), y(n * std::max(s.V, s.F));
  for (size_t i = 0; i < x.size(); ++i) x[i] = Uniform(99 + i);

  double best_step = 1e30, best_cpu = 1e30, flops = 0;
  for (const Kind& k : kinds)
    for (const auto& m : k.mats) flops += 2.0 * m->rows() * m->cols() * n;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<double> seconds(kinds.size(), 0);
    const double c0 = CpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < L; ++l) {
      for (int k = 0; k < 7; ++k) {
        const auto a = std::chrono::steady_clock::now();
        cpu::Matmul(x.data(), n, *kinds[k].mats[l], y.data(), &pool);
        seconds[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
      }
    }
    const auto a = std::chrono::steady_clock::now();
    if (head) cpu::Matmul(x.data(), n, *kinds[7].mats[0], y.data(), &pool);
    const auto t1 = std::chrono::steady_clock::now();
    if (head) seconds[7] = std::chrono::duration<double>(t1 - a).count();
    best_step = std::min(best_step, std::chrono::duration<double>(t1 - t0).count());
    best_cpu = std::min(best_cpu, CpuSeconds() - c0);
    for (size_t k = 0; k < kinds.size(); ++k) kinds[k].best_seconds = std::min(kinds[k].best_seconds, seconds[k]);
  }
  std::printf("shape %s, %lld layers, n=%lld, %lld threads, %s\n", shape_name.c_str(), static_cast<long long>(L),
              static_cast<long long>(n), static_cast<long long>(threads), WeightTypeName(type));
  for (const Kind& k : kinds) {
    const Matrix& m = *k.mats[0];
    const double f = 2.0 * m.rows() * m.cols() * n * k.mats.size();
    std::printf("  %-8s [%6lld x %5lld] x%-3zu %8.2f ms  %6.1f GFLOP/s  %6.1f GB/s\n", k.name, static_cast<long long>(m.rows()),
                static_cast<long long>(m.cols()), k.mats.size(), 1e3 * k.best_seconds, f / k.best_seconds / 1e9,
                static_cast<double>(m.bytes()) * k.mats.size() / k.best_seconds / 1e9);
  }
  // CPU time is steadier than wall time on a shared machine: GFLOP per CPU-second is per-core speed.
  std::printf("step: %.1f ms, %.1f GFLOP/s, %.1f tokens/s; %.1f GFLOP per CPU-second\n", 1e3 * best_step,
              flops / best_step / 1e9, n / best_step, flops / best_cpu / 1e9);
  return 0;
}

}  // namespace
}  // namespace layerskip

int main(int argc, char** argv) { return layerskip::Main(argc, argv); }
