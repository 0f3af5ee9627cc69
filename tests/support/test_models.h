#pragma once
// Small random models for decoding tests, built in memory.
#include <cmath>
#include <memory>

#include "engine/model/weights.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip::testing {

// A small GQA Llama config: hidden 64, heads 4 / kv 2, head_dim 16.
inline LlamaConfig SmallConfig(int layers = 6, int vocab = 97) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  return c;
}

inline void Scale(Matrix& m, float s) {  // s a power of two: exact in bf16 and f32
  const int64_t n = m.rows() * m.cols();
  for (int64_t i = 0; i < n; ++i) {
    if (m.type() == WeightType::kF32) static_cast<float*>(m.data())[i] *= s;
    else static_cast<uint16_t*>(m.data())[i] = F32ToBf16(Bf16ToF32(static_cast<uint16_t*>(m.data())[i]) * s);
  }
}

// Random weights scaled up by `sharpen` (peaked logits), with the residual writes of layers >= quiet_from
// scaled by `quiet` so that early exits agree with the full model often, but not always (LayerSkip-like).
inline std::unique_ptr<LoadedModel> RandomModel(const LlamaConfig& c, WeightType type, uint64_t seed,
                                                float sharpen = 8.0f, int quiet_from = 1 << 20, float quiet = 0.25f,
                                                int threads = 2, int context = 256) {
  ModelWeights w = RandomModelWeights(c, type, seed);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    for (auto* m : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) Scale(**m, sharpen);
    if (l >= quiet_from) {
      Scale(*lw.wo, quiet);
      Scale(*lw.w_down, quiet);
    }
  }
  ModelLoadOptions o;
  o.threads = threads;
  o.max_context = context;
  return WrapWeights(std::make_shared<const ModelWeights>(std::move(w)), o);
}

}  // namespace layerskip::testing
