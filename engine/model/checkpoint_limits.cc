#include "engine/model/checkpoint_limits.h"

#include <cstdlib>
#include <fstream>
#include <algorithm>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/util/status.h"

namespace layerskip {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// A "Key:  N kB" line of /proc/meminfo in bytes, or -1.
int64_t MeminfoBytes(const std::string& text, const std::string& key) {
  const size_t at = text.find(key + ":");
  if (at == std::string::npos) return -1;
  return std::strtoll(text.c_str() + at + key.size() + 1, nullptr, 10) * 1024;
}

int64_t ReadInt(const char* path) {
  std::ifstream in(path);
  std::string s;
  if (!in || !(in >> s) || s == "max") return -1;
  return std::strtoll(s.c_str(), nullptr, 10);
}

}  // namespace

std::vector<ExpectedTensor> ExpectedTensors(const LlamaConfig& c, const LoadOptions& options, int first, int end) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, Q = c.q_dim(), KV = c.kv_dim();
  std::vector<ExpectedTensor> out;
  if (options.embedding || (options.head && c.tie_word_embeddings)) out.push_back({"model.embed_tokens.weight", {V, D}});
  for (int l = first; l < end; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    out.push_back({p + "input_layernorm.weight", {D}, false});
    out.push_back({p + "self_attn.q_proj.weight", {Q, D}});
    out.push_back({p + "self_attn.k_proj.weight", {KV, D}});
    out.push_back({p + "self_attn.v_proj.weight", {KV, D}});
    out.push_back({p + "self_attn.o_proj.weight", {D, Q}});
    out.push_back({p + "post_attention_layernorm.weight", {D}, false});
    out.push_back({p + "mlp.gate_proj.weight", {F, D}});
    out.push_back({p + "mlp.up_proj.weight", {F, D}});
    out.push_back({p + "mlp.down_proj.weight", {D, F}});
  }
  if (options.head) {
    out.push_back({"model.norm.weight", {D}, false});
    if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, D}});
  }
  return out;
}

int LayersPresent(const CheckpointFiles& files) {
  static const std::string kPrefix = "model.layers.";
  int64_t top = -1;
  for (const TensorView* t : files.All()) {
    if (t->name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    char* rest = nullptr;
    const long long n = std::strtoll(t->name.c_str() + kPrefix.size(), &rest, 10);
    if (rest != t->name.c_str() + kPrefix.size() && *rest == '.' && n >= 0) top = std::max<int64_t>(top, n);
  }
  return static_cast<int>(std::min<int64_t>(top + 1, int64_t{1} << 30));
}

int64_t LoadBytes(const std::vector<ExpectedTensor>& tensors, WeightType type, bool int8_layers) {
  int64_t total = 0;
  for (const ExpectedTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;  // dims <= 2^30 each, shapes checked against the files first
    if (t.matrix && int8_layers && t.shape.size() == 2 && t.name.rfind("model.layers.", 0) == 0) {
      const int64_t padded = t.shape[0] * Int8PaddedCols(t.shape[1]);
      total += padded + padded / kInt8Group * 4;  // bytes + f32 scales
      continue;
    }
    total += n * (t.matrix && type == WeightType::kBF16 ? 2 : 4);
  }
  return total;
}

int64_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  if (!in) return -1;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const int64_t avail = MeminfoBytes(text, "MemAvailable");
  if (avail < 0) return -1;
  const int64_t swap = std::max<int64_t>(0, MeminfoBytes(text, "SwapFree"));
  int64_t bytes = avail + swap;
  const int64_t limit = ReadInt("/sys/fs/cgroup/memory.max"), used = ReadInt("/sys/fs/cgroup/memory.current");
  if (limit >= 0 && used >= 0) bytes = std::min(bytes, std::max<int64_t>(0, limit - used));
  return bytes;
}

absl::Status CheckFitsInMemory(int64_t need, int64_t available, const std::string& what) {
  if (available < 0 || need <= available) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat("%s needs %.2f GiB but only %.2f GiB of memory is available", what,
                                                      need / 1073741824.0, available / 1073741824.0));
}

absl::Status CheckCheckpointTensors(const std::filesystem::path& dir, const LlamaConfig& config,
                                    const CheckpointFiles& files, const LoadOptions& options, int first, int end) {
  const int present = LayersPresent(files);
  if (config.num_hidden_layers > present)
    return absl::InvalidArgumentError(absl::StrCat((dir / "config.json").string(), ": num_hidden_layers is ",
                                                   config.num_hidden_layers, " but the checkpoint holds tensors for ",
                                                   present, " layers"));
  const std::vector<ExpectedTensor> tensors = ExpectedTensors(config, options, first, end);
  for (const ExpectedTensor& e : tensors) {
    const TensorView* t = files.Find(e.name);
    if (t == nullptr) {
      std::string why = e.name == "lm_head.weight" ? " and config.json has tie_word_embeddings = false" : "";
      return absl::NotFoundError(absl::StrCat("tensor '", e.name, "' missing from the checkpoint in ", dir.string(), why));
    }
    if (t->shape != e.shape)
      return absl::InvalidArgumentError(absl::StrCat("tensor '", e.name, "' in ", files.FileOf(e.name).string(),
                                                     ": expected shape ", ShapeString(e.shape), " (from config.json), got ",
                                                     ShapeString(t->shape)));
  }
  return absl::OkStatus();
}

absl::Status CheckCheckpoint(const std::filesystem::path& dir, const LlamaConfig& config, const CheckpointFiles& files,
                             const LoadOptions& options, int first, int end) {
  LS_RETURN_IF_ERROR(CheckCheckpointTensors(dir, config, files, options, first, end));
  return CheckFitsInMemory(LoadBytes(ExpectedTensors(config, options, first, end), options.type, options.int8_layers),
                           AvailableMemoryBytes(),
                           absl::StrCat("loading layers [", first, ", ", end, ") of ", dir.string(), " as ",
                                        options.int8_layers ? "int8" : WeightTypeName(options.type)));
}

}  // namespace layerskip
