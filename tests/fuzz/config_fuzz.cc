// libFuzzer target: ParseLlamaConfig over arbitrary text; accepted configs must satisfy the invariants and
// survive a LlamaConfigToJson round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = layerskip::ParseLlamaConfig(text, "fuzz/config.json");
  if (!config.ok()) return 0;
  const layerskip::LlamaConfig& c = *config;
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.head_dim <= 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0 || c.vocab_size <= 0 || c.num_hidden_layers <= 0) {
    __builtin_trap();
  }
  auto again = layerskip::ParseLlamaConfig(layerskip::LlamaConfigToJson(c), "roundtrip");
  if (!again.ok() || again->hidden_size != c.hidden_size || again->head_dim != c.head_dim ||
      again->eos_token_ids != c.eos_token_ids || again->rope_scaling.has_value() != c.rope_scaling.has_value()) {
    __builtin_trap();
  }
  return 0;
}
