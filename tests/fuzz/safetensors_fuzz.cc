// libFuzzer target: ParseSafetensors over arbitrary bytes (header length, JSON header, offsets, shapes).
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tensors = layerskip::ParseSafetensors(data, size, "fuzz.safetensors");
  if (tensors.ok()) {
    // Every view must lie inside the input: touch its first and last byte.
    volatile uint8_t sink = 0;
    for (const layerskip::TensorView& t : *tensors) {
      if (t.nbytes != static_cast<size_t>(t.numel()) * layerskip::DTypeSize(t.dtype)) __builtin_trap();
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
      if (t.nbytes > 0) sink = sink + t.data[0] + t.data[t.nbytes - 1];
    }
    (void)sink;
  }
  return 0;
}
