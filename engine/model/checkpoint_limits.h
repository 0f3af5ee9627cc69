#pragma once
// Limits a checkpoint is checked against before anything is allocated: the layers config.json promises
// against the layers whose tensors are present, every tensor's shape against config.json (so sizes agree
// with what the files hold), and the bytes a load needs against the memory this process can get.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"

namespace layerskip {

// One tensor a load reads: its name, the shape config.json implies, and whether it is a matrix (stored in
// the load's WeightType) or a norm (always f32).
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool matrix = true;
};

// The tensors LoadModelWeights reads for `options` (layers [first, end), embedding, head), in load order.
// `end` is clamped by the caller; the list holds 9 entries per layer.
std::vector<ExpectedTensor> ExpectedTensors(const LlamaConfig& config, const LoadOptions& options, int first, int end);

// 1 + the largest N in the checkpoint's "model.layers.N." tensor names (0 when none): the layers config.json
// may promise. (A pipeline stage's checkpoint may hold only its own layers; missing ones are named later.)
int LayersPresent(const CheckpointFiles& files);

// Checks, without allocating: config.json's num_hidden_layers against the layers present (InvalidArgument
// naming both counts), then every expected tensor's presence (NotFound) and shape (InvalidArgument).
absl::Status CheckCheckpointTensors(const std::filesystem::path& dir, const LlamaConfig& config,
                                    const CheckpointFiles& files, const LoadOptions& options, int first, int end);

// CheckCheckpointTensors, then the bytes the load would allocate against AvailableMemoryBytes()
// (ResourceExhausted naming both).
absl::Status CheckCheckpoint(const std::filesystem::path& dir, const LlamaConfig& config, const CheckpointFiles& files,
                             const LoadOptions& options, int first, int end);

// Bytes of the expected tensors once loaded (matrices in `type`, norms in f32; with int8_layers the layers'
// matrices as int8 rows plus scales). Matrices used in place count too: their pages are resident.
int64_t LoadBytes(const std::vector<ExpectedTensor>& tensors, WeightType type, bool int8_layers = false);

// Memory this process may still allocate: MemAvailable + SwapFree from /proc/meminfo, lowered by a cgroup
// v2 memory.max; -1 when unknown (then no check is made).
int64_t AvailableMemoryBytes();

// ResourceExhausted "`what` needs X GiB but only Y GiB of memory is available" when need > available >= 0.
absl::Status CheckFitsInMemory(int64_t need, int64_t available, const std::string& what);

}  // namespace layerskip
