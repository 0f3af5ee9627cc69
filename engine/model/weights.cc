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
