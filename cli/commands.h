#pragma once
// Subcommands of the `layerskip` binary. Each returns the process exit code and prints one-line errors.
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flags/flags.h"
#include "engine/decode/generate.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/device.h"
#include "engine/runtime/loaded_model.h"

namespace layerskip::cli {

using flags::Flags;  // flags/flags.h
using flags::ParseIntList;

int RunGenerate(int argc, char** argv);
int RunInspect(int argc, char** argv);
int RunBench(int argc, char** argv);
int RunLogits(int argc, char** argv);
int RunClient(int argc, char** argv);  // cli/client_command.cc: a gRPC client of layerskip-coordinator

// Shared by the commands: --dtype, --threads, --max-context -> load options. --dtype auto (the default):
// the checkpoint's own (--model's config.json torch_dtype; engine/runtime/checkpoint_dtype.h).
absl::StatusOr<ModelLoadOptions> LoadOptionsFromFlags(const Flags& flags);
// --device cpu|cuda|cuda:N, checked on this machine (a missing GPU: FailedPrecondition naming the device
// and the reason, exit 1) before any weights are read.
absl::StatusOr<DeviceSpec> DeviceFromFlags(const Flags& flags);
// The backend of `m` on `device` with num_slots slots of m.context positions.
// The backend of --device for `m` (--kv-cache-positions, --gpu-memory-fraction size a CUDA device's cache).
absl::StatusOr<std::unique_ptr<Backend>> BackendFromFlags(const Flags& flags, const LoadedModel& m,
                                                          const DeviceSpec& device, int num_slots);
// --mode, --exit-layer, --speculations -> decode options (validated against num_layers).
absl::StatusOr<DecodeOptions> DecodeOptionsFromFlags(const Flags& flags, int num_layers);
// --draft-vocab K [--draft-vocab-corpus FILE]: the draft head's vocabulary subset (the K most frequent
// ids of the corpus file's encoding, or of `corpus`, topped up with the lowest ids), set on the model.
absl::Status ApplyDraftVocabulary(const Flags& flags, LoadedModel& m, std::vector<int> corpus = {});
// For automatic speculation (or when want_cost): the cost model (--calibration cached|fresh|off,
// --calibration-budget SECONDS) attached to `decode`. `model_id` keys the calibration cache.
// The calibration runs on `device` (a GPU: a scratch backend there, freed afterwards).
absl::Status AttachCostModel(const Flags& flags, const std::string& model_id, LoadedModel& m, DecodeOptions& decode,
                             bool want_cost = false, const DeviceSpec& device = DeviceSpec::Cpu());
// Prints "layerskip <command>: <message>" to stderr and returns 1 (2 for usage errors).
int Fail(const std::string& command, const absl::Status& status);

}  // namespace layerskip::cli
