// Matrix storage, weight accounting, and fast deterministic random weights.
#include "engine/model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <sys/mman.h>
#include <thread>

#include "engine/util/bf16.h"

namespace layerskip {
namespace {

constexpr size_t kAlign = 64;
// Buffers of at least this size come from mmap: already zero, page-aligned, and faulted in by whichever
// thread first writes them (in parallel when loading or generating).
constexpr size_t kMmapThreshold = size_t{1} << 20;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Approximate N(0, 1) from one 32-bit hash: the sum of three 10-bit uniforms (Irwin-Hall, n = 3) has mean
// 1534.5 and standard deviation ~512. Integer-only until the last step, so the fill loops vectorise (AVX2).
inline float ApproxNormal(uint32_t h) {
  const int32_t s = static_cast<int32_t>((h & 1023u) + ((h >> 10) & 1023u) + ((h >> 20) & 1023u));
  return (static_cast<float>(s) - 1534.5f) * (1.0f / 511.9998f);
}

// Murmur3's 32-bit finaliser: a good hash of a counter.
inline uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

// Elements are generated in fixed blocks, each seeded from (tensor seed, block index), so the values do not
// depend on the number of threads.
constexpr int64_t kBlock = 1 << 16;

// Float -> bf16 bits, round to nearest even; inputs are finite (no NaN branch, so the loop vectorises).
inline uint16_t FiniteToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Fills out[0, n) with mean + stddev * N(0,1); as f32 (`bf16` false) or bf16 bits. Element i of block b is
// ApproxNormal(Mix32(seed_b + i * golden)), seed_b a splitmix64 hash of (seed, b).
void FillNormal(void* out, bool bf16, int64_t n, uint64_t seed, float mean, float stddev, int num_threads) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  auto work = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      uint64_t state = seed ^ (static_cast<uint64_t>(b) * 0xd1b54a32d192ed03ull);
      const uint32_t base = static_cast<uint32_t>(SplitMix64(state));
      const int64_t begin = b * kBlock, end = std::min(n, begin + kBlock);
      auto value = [&](int64_t i) {
        return mean + stddev * ApproxNormal(Mix32(base + static_cast<uint32_t>(i - begin) * 0x9e3779b9u));
      };
      if (bf16) {
        uint16_t* o = static_cast<uint16_t*>(out);
        for (int64_t i = begin; i < end; ++i) o[i] = FiniteToBf16(value(i));
      } else {
        float* o = static_cast<float*>(out);
        for (int64_t i = begin; i < end; ++i) o[i] = value(i);
      }
    }
  };
  int threads = static_cast<int>(std::min<int64_t>(num_threads, blocks));
  if (threads <= 1) {
    work(0, blocks);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t per = (blocks + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    int64_t b0 = t * per, b1 = std::min(blocks, b0 + per);
    if (b0 < b1) pool.emplace_back(work, b0, b1);
  }
  work(0, std::min(blocks, per));
  for (auto& th : pool) th.join();
}

int DefaultThreads() {
  unsigned hc = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hc == 0 ? 4u : hc, 1u, 64u));
}

// Tensor seeds: one splitmix step of (seed, tensor id).
uint64_t TensorSeed(uint64_t seed, uint64_t id) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + id * 0xbf58476d1ce4e5b9ull + 1;
  return SplitMix64(s);
}

std::unique_ptr<Matrix> RandomMatrix(WeightType type, int64_t rows, int64_t cols, uint64_t seed, int threads) {
  auto m = std::make_unique<Matrix>(type, rows, cols);
  FillNormal(m->data(), type == WeightType::kBF16, rows * cols, seed, 0.0f, 0.02f, threads);
  return m;
}

std::vector<float> RandomNorm(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  FillNormal(v.data(), false, n, seed, 1.0f, 0.1f, 1);
  return v;
}

}  // namespace

const char* WeightTypeName(WeightType t) {
  switch (t) {
    case WeightType::kBF16: return "bf16";
    case WeightType::kF32: return "f32";
    case WeightType::kInt8: return "int8";
  }
  return "?";
}

namespace {

// A zero-filled, 64-byte aligned buffer of `bytes`: mmap for large ones (see kMmapThreshold).
void* AllocateZeroed(size_t bytes) {
  if (bytes >= kMmapThreshold) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Decoding streams every weight once per token: ask for 2 MiB pages (fewer TLB misses) where the
    // kernel offers them (this development VM does not: AnonHugePages stays 0).
    ::madvise(p, bytes, MADV_HUGEPAGE);
    return p;
  }
  const size_t alloc = std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);  // aligned_alloc needs a multiple
  void* p = std::aligned_alloc(kAlign, alloc);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, alloc);
  return p;
}

void Release(void* p, size_t bytes) {
  if (bytes >= kMmapThreshold) {
    ::munmap(p, bytes);
  } else {
    std::free(p);
  }
}

}  // namespace

Matrix::Matrix(WeightType type, int64_t rows, int64_t cols) : type_(type), rows_(rows), cols_(cols) {
  if (rows < 0 || cols < 0) throw std::bad_array_new_length();
  const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
  if (type == WeightType::kInt8) {
    const size_t stride = static_cast<size_t>(Int8PaddedCols(cols));
    // Data, then the scales at the next 64-byte boundary, in one allocation.
    const size_t data_bytes = (r * stride + kAlign - 1) / kAlign * kAlign;
    const size_t scale_bytes = r * (stride / kInt8Group) * sizeof(float);
    alloc_bytes_ = std::max<size_t>(1, data_bytes + scale_bytes);
    data_ = AllocateZeroed(alloc_bytes_);
    std::memset(data_, 128, r * stride);  // +128 offset: every weight 0
    scales_ = reinterpret_cast<float*>(static_cast<char*>(data_) + data_bytes);
    bytes_ = r * stride + scale_bytes;
    return;
  }
  bytes_ = r * c * (type == WeightType::kBF16 ? 2 : 4);
  alloc_bytes_ = bytes_;
  data_ = AllocateZeroed(alloc_bytes_);
}

Matrix::Matrix(WeightType type, int64_t rows, int64_t cols, const void* data, std::shared_ptr<const void> owner)
    : type_(type), rows_(rows), cols_(cols), data_(const_cast<void*>(data)), owner_(std::move(owner)) {
  if (rows < 0 || cols < 0 || type == WeightType::kInt8 || owner_ == nullptr) throw std::invalid_argument("Matrix: bad in-place view");
  bytes_ = static_cast<size_t>(rows) * static_cast<size_t>(cols) * (type == WeightType::kBF16 ? 2 : 4);
}

Matrix::~Matrix() {
  if (owner_ == nullptr) Release(data_, alloc_bytes_);
}

float Matrix::At(int64_t r, int64_t c) const {
  if (type_ == WeightType::kInt8) {
    const int q = static_cast<int>(int8()[r * int8_stride() + Int8Position(c)]) - 128;
    return static_cast<float>(q) * scales_[r * (int8_stride() / kInt8Group) + c / kInt8Group];
  }
  const int64_t i = r * cols_ + c;
  return type_ == WeightType::kBF16 ? Bf16ToF32(bf16()[i]) : f32()[i];
}

size_t ModelWeights::bytes() const {
  size_t total = 0;
  auto add = [&](const Matrix* m) { total += m != nullptr ? m->bytes() : 0; };
  add(embed.get());
  if (lm_head != embed) add(lm_head.get());
  for (const LayerWeights& l : layers) {
    for (const Matrix* m : {l.wq.get(), l.wk.get(), l.wv.get(), l.wo.get(), l.w_gate.get(), l.w_up.get(), l.w_down.get()}) add(m);
    total += (l.attn_norm.size() + l.mlp_norm.size()) * sizeof(float);
  }
  total += final_norm.size() * sizeof(float);
  return total;
}

ModelWeights RandomModelWeights(const LlamaConfig& config, WeightType type, uint64_t seed) {
  ModelWeights w;
  w.config = config;
  LlamaConfig& c = w.config;
  if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
  if (c.head_dim == 0 && c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  w.type = type;
  w.first_layer = 0;
  w.end_layer = c.num_hidden_layers;
  const int threads = DefaultThreads();
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, Q = c.q_dim(), KV = c.kv_dim();
  uint64_t id = 0;
  w.embed = RandomMatrix(type, V, D, TensorSeed(seed, id++), threads);  // [V, D]
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (LayerWeights& l : w.layers) {
    l.attn_norm = RandomNorm(D, TensorSeed(seed, id++));
    l.wq = RandomMatrix(type, Q, D, TensorSeed(seed, id++), threads);   // [H*hd, D]
    l.wk = RandomMatrix(type, KV, D, TensorSeed(seed, id++), threads);  // [KV*hd, D]
    l.wv = RandomMatrix(type, KV, D, TensorSeed(seed, id++), threads);  // [KV*hd, D]
    l.wo = RandomMatrix(type, D, Q, TensorSeed(seed, id++), threads);   // [D, H*hd]
    l.mlp_norm = RandomNorm(D, TensorSeed(seed, id++));
    l.w_gate = RandomMatrix(type, F, D, TensorSeed(seed, id++), threads);  // [F, D]
    l.w_up = RandomMatrix(type, F, D, TensorSeed(seed, id++), threads);    // [F, D]
    l.w_down = RandomMatrix(type, D, F, TensorSeed(seed, id++), threads);  // [D, F]
  }
  w.final_norm = RandomNorm(D, TensorSeed(seed, id++));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    w.lm_head = RandomMatrix(type, V, D, TensorSeed(seed, id++), threads);  // [V, D]
  }
  return w;
}

}  // namespace layerskip
