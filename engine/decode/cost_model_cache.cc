#include "engine/decode/cost_model_cache.h"

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <system_error>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/decode/cost_calibration.h"
#include "engine/util/status.h"
#include "nlohmann/json.hpp"

namespace layerskip {

absl::StatusOr<Calibration> ParseCalibration(const std::string& text) {
  if (text == "cached") return Calibration::kCached;
  if (text == "fresh") return Calibration::kFresh;
  if (text == "off") return Calibration::kOff;
  return absl::InvalidArgumentError(absl::StrCat("--calibration: '", text, "' is not cached, fresh or off"));
}

std::string CostModelKey(const Model& model, const CostModelRequest& r) {
  const LlamaConfig& c = model.config();
  return absl::StrCat(r.model_id, "|L", c.num_hidden_layers, " D", c.hidden_size, " F", c.intermediate_size, " V",
                      c.vocab_size, " ", model.weights().weights_name(), "|draft vocab ",
                      model.draft_vocab_size(), "|", r.device, "|threads ",
                      model.pool() ? model.pool()->num_threads() : 1);
}

std::filesystem::path CostModelCachePath(const std::string& key) {
  std::filesystem::path dir;
  if (const char* d = std::getenv("LAYERSKIP_CACHE_DIR"); d && *d) dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::filesystem::path(x) / "layerskip";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "layerskip";
  else dir = std::filesystem::temp_directory_path() / "layerskip";
  return dir / absl::StrFormat("cost-%016x.json", std::hash<std::string>{}(key));
}

std::string CostModelToJson(const CostModel& c, const std::string& key) {
  nlohmann::json j = {{"key", key},
                      {"num_layers", c.num_layers},
                      {"layer_seconds", c.layer_seconds},
                      {"head_seconds", c.head_seconds},
                      {"draft_head_seconds", c.draft_head_seconds},
                      {"prior_acceptance", c.prior_acceptance}};
  return j.dump(1);
}

absl::StatusOr<CostModel> CostModelFromJson(const std::string& text, const std::string& key) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("cost model: not a JSON object");
  if (!j.contains("key") || !j["key"].is_string() || j["key"].get<std::string>() != key)
    return absl::NotFoundError("cost model: made for another model, device or thread count");
  CostModel c;
  try {
    c.num_layers = j.at("num_layers").get<int>();
    c.layer_seconds = j.at("layer_seconds").get<std::vector<double>>();
    c.head_seconds = j.at("head_seconds").get<std::vector<double>>();
    c.draft_head_seconds = j.at("draft_head_seconds").get<std::vector<double>>();
    c.prior_acceptance = j.at("prior_acceptance").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("cost model: ", e.what()));
  }
  if (!c.Valid()) return absl::DataLossError("cost model: fields of the wrong size or out of range");
  return c;
}

absl::StatusOr<CostModel> ObtainCostModel(Model& model, const CostModelRequest& r, Backend* device_backend) {
  if (r.calibration == Calibration::kOff) return DefaultCostModel(model);
  const std::string key = CostModelKey(model, r);
  const std::filesystem::path path = CostModelCachePath(key);
  if (r.calibration == Calibration::kCached) {
    std::ifstream in(path);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<CostModel> cached = CostModelFromJson(text.str(), key);
      if (cached.ok() && cached->num_layers == model.num_layers()) {
        cached->source = "cached " + path.string();
        return cached;
      }
    }
  }
  CalibrationOptions options;
  options.probe_tokens = r.probe_tokens;
  options.budget_seconds = r.budget_seconds;
  LS_ASSIGN_OR_RETURN(CostModel c, device_backend ? CalibrateCostModel(*device_backend, options)
                                                  : CalibrateCostModel(model, options));
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  const std::filesystem::path tmp = path.string() + ".tmp" + std::to_string(std::hash<std::string>{}(key) ^ ::getpid());
  {
    std::ofstream out(tmp);
    out << CostModelToJson(c, key);
  }
  std::filesystem::rename(tmp, path, ec);  // best effort: a read-only home only costs a calibration next time
  if (ec) std::filesystem::remove(tmp, ec);
  return c;
}

}  // namespace layerskip
