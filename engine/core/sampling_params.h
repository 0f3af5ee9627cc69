#pragma once
// How a token is chosen from logits (base layer: the sampling kernels of every device, the decoders and
// the services share it): greedy, or temperature then top-k then top-p as transformers' warpers apply them.
namespace layerskip {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  bool greedy() const { return temperature <= 0.0f; }
};

}  // namespace layerskip
