// Parsing and validation of Hugging Face Llama config.json files.
#include "engine/model/config.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

using nlohmann::json;

// Debian's Abseil has its own absl::string_view; StrCat does not take std::string_view.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Largest accepted size (each of vocab/hidden/intermediate/heads/head_dim/layers/positions); products such as
// heads * head_dim must also fit in an int.
constexpr int64_t kMaxDim = int64_t{1} << 30;

// Builds errors of the form "config.json: field 'X': why".
class FieldErrors {
 public:
  explicit FieldErrors(std::string_view source) : source_(source) {}
  absl::Status Invalid(std::string_view field, std::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field '", AV(field), "': ", AV(why)));
  }
  absl::Status Unimplemented(std::string_view field, std::string_view why) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": field '", AV(field), "': ", AV(why)));
  }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// Returns the value of `key` or nullptr when absent or null.
const json* Get(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string TypeName(const json& v) { return v.type_name(); }

// Reads an integer in [min, max]; absent/null -> `def` (or an error when `def` is empty).
absl::StatusOr<int64_t> GetInt(const FieldErrors& err, const json& obj, const char* key, std::optional<int64_t> def,
                               int64_t min, int64_t max) {
  const json* v = Get(obj, key);
  if (v == nullptr) {
    if (def.has_value()) return *def;
    return err.Invalid(key, "missing (required)");
  }
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) return err.Invalid(key, absl::StrCat("value ", u, " out of range [", min, ", ", max, "]"));
    x = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float()) {
    // Accept integral floats such as 4096.0 (some exporters write them).
    double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.0e18 || d > 9.0e18) {
      return err.Invalid(key, absl::StrCat("expected an integer, got ", v->dump()));
    }
    x = static_cast<int64_t>(d);
  } else {
    return err.Invalid(key, absl::StrCat("expected an integer, got ", TypeName(*v)));
  }
  if (x < min || x > max) return err.Invalid(key, absl::StrCat("value ", x, " out of range [", min, ", ", max, "]"));
  return x;
}

// Reads a finite number > 0 (absent/null -> def).
absl::StatusOr<double> GetPositive(const FieldErrors& err, const json& obj, const char* key, std::optional<double> def) {
  const json* v = Get(obj, key);
  if (v == nullptr) {
    if (def.has_value()) return *def;
    return err.Invalid(key, "missing (required)");
  }
  if (!v->is_number()) return err.Invalid(key, absl::StrCat("expected a number, got ", TypeName(*v)));
  double d = v->get<double>();
  // Must be a positive normal float once narrowed (1e-50 would become 0).
  if (!std::isfinite(d) || d < 1.2e-38 || d > 3.0e38) return err.Invalid(key, absl::StrCat("must be a positive finite number, got ", v->dump()));
  return d;
}

absl::StatusOr<bool> GetBool(const FieldErrors& err, const json& obj, const char* key, bool def) {
  const json* v = Get(obj, key);
  if (v == nullptr) return def;
  if (!v->is_boolean()) return err.Invalid(key, absl::StrCat("expected a boolean, got ", TypeName(*v)));
  return v->get<bool>();
}

absl::StatusOr<std::string> GetString(const FieldErrors& err, const json& obj, const char* key, std::string def) {
  const json* v = Get(obj, key);
  if (v == nullptr) return def;
  if (!v->is_string()) return err.Invalid(key, absl::StrCat("expected a string, got ", TypeName(*v)));
  return v->get<std::string>();
}

// Token ids are non-negative ints.
absl::StatusOr<int> TokenId(const FieldErrors& err, const char* key, const json& v) {
  if (!v.is_number_integer() && !v.is_number_unsigned()) {
    return err.Invalid(key, absl::StrCat("expected an integer token id, got ", TypeName(v)));
  }
  if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max())
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int>::max())) {
    return err.Invalid(key, absl::StrCat("token id ", v.dump(), " out of range"));
  }
  return static_cast<int>(v.get<int64_t>());
}

// "architectures" (list containing LlamaForCausalLM) and "model_type" ("llama") when present.
absl::Status CheckArchitecture(const FieldErrors& err, const json& obj, LlamaConfig& c) {
  if (const json* a = Get(obj, "architectures")) {
    if (!a->is_array()) return err.Invalid("architectures", absl::StrCat("expected a list of strings, got ", TypeName(*a)));
    bool found = false;
    std::string names;
    for (const json& e : *a) {
      if (!e.is_string()) return err.Invalid("architectures", absl::StrCat("expected a list of strings, found ", TypeName(e)));
      const std::string& s = e.get_ref<const std::string&>();
      if (s == "LlamaForCausalLM") found = true;
      absl::StrAppend(&names, names.empty() ? "" : ",", s);
    }
    if (!found) return err.Unimplemented("architectures", absl::StrCat("unsupported architecture ", names.empty() ? "(empty list)" : names));
    c.architecture = "LlamaForCausalLM";
  }
  if (const json* m = Get(obj, "model_type")) {
    if (!m->is_string()) return err.Invalid("model_type", absl::StrCat("expected a string, got ", TypeName(*m)));
    if (m->get_ref<const std::string&>() != "llama") {
      return err.Unimplemented("model_type", absl::StrCat("unsupported architecture ", m->get_ref<const std::string&>()));
    }
  }
  return absl::OkStatus();
}

// A RoPE object: rope_scaling {"rope_type"|"type": "llama3", factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings}, or transformers v5's rope_parameters (the same keys plus rope_theta).
// "default" means no scaling.
absl::Status ParseRopeObject(const FieldErrors& err, const char* field, const json& r, LlamaConfig& c) {
  if (!r.is_object()) return err.Invalid(field, absl::StrCat("expected an object or null, got ", TypeName(r)));
  const json* t = Get(r, "rope_type");
  if (t == nullptr) t = Get(r, "type");
  if (t == nullptr) return err.Invalid(field, "missing 'rope_type'");
  if (!t->is_string()) return err.Invalid(field, absl::StrCat("'rope_type' must be a string, got ", TypeName(*t)));
  const std::string& type = t->get_ref<const std::string&>();
  if (type == "default") return absl::OkStatus();
  if (type != "llama3") return err.Unimplemented(field, absl::StrCat("unsupported rope_type '", type, "'"));
  FieldErrors sub(absl::StrCat(err.source(), ": field '", field, "'"));
  RopeScaling s;
  LS_ASSIGN_OR_RETURN(double factor, GetPositive(sub, r, "factor", std::nullopt));
  LS_ASSIGN_OR_RETURN(double low, GetPositive(sub, r, "low_freq_factor", std::nullopt));
  LS_ASSIGN_OR_RETURN(double high, GetPositive(sub, r, "high_freq_factor", std::nullopt));
  LS_ASSIGN_OR_RETURN(int64_t orig, GetInt(sub, r, "original_max_position_embeddings", std::nullopt, 1, kMaxDim));
  if (!(static_cast<float>(high) > static_cast<float>(low))) return err.Invalid(field, "high_freq_factor must be greater than low_freq_factor");
  s.rope_type = type;
  s.factor = static_cast<float>(factor);
  s.low_freq_factor = static_cast<float>(low);
  s.high_freq_factor = static_cast<float>(high);
  s.original_max_position_embeddings = static_cast<int>(orig);
  c.rope_scaling = s;
  return absl::OkStatus();
}

// rope_theta and the scaling: from rope_parameters when present (transformers v5), else from the
// top-level rope_theta and rope_scaling.
absl::Status ParseRope(const FieldErrors& err, const json& obj, LlamaConfig& c) {
  LS_ASSIGN_OR_RETURN(double theta, GetPositive(err, obj, "rope_theta", 10000.0));
  const json* params = Get(obj, "rope_parameters");
  if (params != nullptr && !params->is_null()) {
    if (!params->is_object()) return err.Invalid("rope_parameters", absl::StrCat("expected an object, got ", TypeName(*params)));
    FieldErrors sub(absl::StrCat(err.source(), ": field 'rope_parameters'"));
    LS_ASSIGN_OR_RETURN(theta, GetPositive(sub, *params, "rope_theta", theta));
    LS_RETURN_IF_ERROR(ParseRopeObject(err, "rope_parameters", *params, c));
  } else if (const json* r = Get(obj, "rope_scaling"); r != nullptr) {
    LS_RETURN_IF_ERROR(ParseRopeObject(err, "rope_scaling", *r, c));
  }
  c.rope_theta = static_cast<float>(theta);
  return absl::OkStatus();
}

absl::Status ParseFields(const FieldErrors& err, const json& obj, LlamaConfig& c) {
  LS_RETURN_IF_ERROR(CheckArchitecture(err, obj, c));
  LS_ASSIGN_OR_RETURN(int64_t vocab, GetInt(err, obj, "vocab_size", std::nullopt, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(int64_t hidden, GetInt(err, obj, "hidden_size", std::nullopt, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(int64_t inter, GetInt(err, obj, "intermediate_size", std::nullopt, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(int64_t layers, GetInt(err, obj, "num_hidden_layers", std::nullopt, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(int64_t heads, GetInt(err, obj, "num_attention_heads", std::nullopt, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(int64_t kv_heads, GetInt(err, obj, "num_key_value_heads", heads, 1, kMaxDim));
  if (heads % kv_heads != 0) {
    return err.Invalid("num_key_value_heads", absl::StrCat("num_attention_heads (", heads, ") is not divisible by ", kv_heads));
  }
  int64_t default_head_dim = hidden / heads;
  if (Get(obj, "head_dim") == nullptr && hidden % heads != 0) {
    return err.Invalid("head_dim", absl::StrCat("absent and hidden_size (", hidden, ") is not divisible by num_attention_heads (", heads, ")"));
  }
  LS_ASSIGN_OR_RETURN(int64_t head_dim, GetInt(err, obj, "head_dim", default_head_dim, 1, kMaxDim));
  if (heads * head_dim > std::numeric_limits<int>::max()) {
    return err.Invalid("head_dim", absl::StrCat("num_attention_heads * head_dim = ", heads * head_dim, " is too large"));
  }
  LS_ASSIGN_OR_RETURN(int64_t max_pos, GetInt(err, obj, "max_position_embeddings", 2048, 1, kMaxDim));
  LS_ASSIGN_OR_RETURN(double eps, GetPositive(err, obj, "rms_norm_eps", 1e-6));
  LS_RETURN_IF_ERROR(ParseRope(err, obj, c));
  LS_ASSIGN_OR_RETURN(c.tie_word_embeddings, GetBool(err, obj, "tie_word_embeddings", false));
  LS_ASSIGN_OR_RETURN(c.attention_bias, GetBool(err, obj, "attention_bias", false));
  if (c.attention_bias) return err.Invalid("attention_bias", "must be false (biases are not supported)");
  LS_ASSIGN_OR_RETURN(c.mlp_bias, GetBool(err, obj, "mlp_bias", false));
  if (c.mlp_bias) return err.Invalid("mlp_bias", "must be false (biases are not supported)");
  LS_ASSIGN_OR_RETURN(c.hidden_act, GetString(err, obj, "hidden_act", "silu"));
  if (c.hidden_act != "silu") return err.Invalid("hidden_act", absl::StrCat("must be 'silu', got '", c.hidden_act, "'"));

  if (const json* b = Get(obj, "bos_token_id")) {
    LS_ASSIGN_OR_RETURN(int bos, TokenId(err, "bos_token_id", *b));
    c.bos_token_id = bos;
  }
  if (const json* e = Get(obj, "eos_token_id")) {
    if (e->is_array()) {
      for (const json& id : *e) {
        LS_ASSIGN_OR_RETURN(int eos, TokenId(err, "eos_token_id", id));
        c.eos_token_ids.push_back(eos);
      }
    } else {
      LS_ASSIGN_OR_RETURN(int eos, TokenId(err, "eos_token_id", *e));
      c.eos_token_ids.push_back(eos);
    }
  }
  // Newer transformers write "dtype", older "torch_dtype".
  const char* dtype_key = Get(obj, "torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  LS_ASSIGN_OR_RETURN(c.torch_dtype, GetString(err, obj, dtype_key, ""));

  c.vocab_size = static_cast<int>(vocab);
  c.hidden_size = static_cast<int>(hidden);
  c.intermediate_size = static_cast<int>(inter);
  c.num_hidden_layers = static_cast<int>(layers);
  c.num_attention_heads = static_cast<int>(heads);
  c.num_key_value_heads = static_cast<int>(kv_heads);
  c.head_dim = static_cast<int>(head_dim);
  c.max_position_embeddings = static_cast<int>(max_pos);
  c.rms_norm_eps = static_cast<float>(eps);
  return absl::OkStatus();
}

// A float written as the shortest decimal that reads back to the same float (1e-05, not 9.99999974e-06).
double ShortestDouble(float f) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf) - 1, f);
  if (ec != std::errc()) return f;
  *end = '\0';
  return std::strtod(buf, nullptr);
}

}  // namespace

absl::StatusOr<LlamaConfig> ParseLlamaConfig(std::string_view json_text, std::string_view source) {
  FieldErrors err(source);
  json obj;
  try {
    obj = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(AV(source), ": invalid JSON: ", e.what()));
  }
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(AV(source), ": expected a JSON object, got ", obj.type_name()));
  }
  LlamaConfig c;
  try {
    LS_RETURN_IF_ERROR(ParseFields(err, obj, c));
  } catch (const json::exception& e) {  // defensive: every access is type-checked first
    return absl::InvalidArgumentError(absl::StrCat(AV(source), ": ", e.what()));
  }
  return c;
}

absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::filesystem::path& dir) {
  std::filesystem::path path = dir / "config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return ParseLlamaConfig(ss.str(), path.string());
}

std::string LlamaConfigToJson(const LlamaConfig& c) {
  json j = json::object();
  j["architectures"] = json::array({c.architecture.empty() ? "LlamaForCausalLM" : c.architecture});
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = ShortestDouble(c.rms_norm_eps);
  j["rope_theta"] = ShortestDouble(c.rope_theta);
  if (c.rope_scaling.has_value()) {
    const RopeScaling& s = *c.rope_scaling;
    j["rope_scaling"] = {{"rope_type", s.rope_type},
                         {"factor", ShortestDouble(s.factor)},
                         {"low_freq_factor", ShortestDouble(s.low_freq_factor)},
                         {"high_freq_factor", ShortestDouble(s.high_freq_factor)},
                         {"original_max_position_embeddings", s.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["hidden_act"] = c.hidden_act;
  j["bos_token_id"] = c.bos_token_id.has_value() ? json(*c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

uint64_t ConfigFingerprint(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json", std::ios::binary);
  if (!in) return 0;
  std::stringstream ss;
  ss << in.rdbuf();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : ss.str()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace layerskip
