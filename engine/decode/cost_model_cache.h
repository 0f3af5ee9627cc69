#pragma once
// Where a calibrated CostModel is kept between runs: one small JSON file per (model, device, threads,
// draft vocabulary) under $LAYERSKIP_CACHE_DIR, else $XDG_CACHE_HOME/layerskip, else ~/.cache/layerskip.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/decode/cost_model.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/model.h"

namespace layerskip {

enum class Calibration { kCached, kFresh, kOff };  // --calibration cached (default) | fresh | off

struct CostModelRequest {
  Calibration calibration = Calibration::kCached;
  std::string model_id;           // e.g. the model directory's absolute path, or "random llama3.2-1b"
  std::string device = "cpu";
  std::vector<int> probe_tokens;  // the acceptance prior's text (see CalibrateCostModel)
  double budget_seconds = 1.0;
};

// Parses "cached" / "fresh" / "off"; InvalidArgument naming the value otherwise.
absl::StatusOr<Calibration> ParseCalibration(const std::string& text);

// The cache key: model id, shape, weight type, draft vocabulary size, device and threads.
std::string CostModelKey(const Model& model, const CostModelRequest& request);
// The cache file for a key (the directory is not created here).
std::filesystem::path CostModelCachePath(const std::string& key);

// The cost model for `model`: DefaultCostModel when calibration is off; else the cached one for this key
// (unless kFresh), else a calibration written to the cache (a cache that cannot be written is not an error).
// The calibration runs on `device_backend` when given (the backend of request.device, slot 0 free), else on
// a CPU backend over `model`.
absl::StatusOr<CostModel> ObtainCostModel(Model& model, const CostModelRequest& request,
                                          Backend* device_backend = nullptr);

// JSON round trip (tests and the cache).
std::string CostModelToJson(const CostModel& cost, const std::string& key);
absl::StatusOr<CostModel> CostModelFromJson(const std::string& text, const std::string& key);

}  // namespace layerskip
