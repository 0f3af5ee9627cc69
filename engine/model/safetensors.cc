// Safetensors parsing (bounds- and overflow-checked), mmap-backed files, and single/sharded checkpoints.
#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
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

absl::Status Invalid(std::string_view source, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(AV(source), ": ", AV(why)));
}

// Reads a non-negative JSON integer (no floats, no negatives).
bool GetU64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// One header entry: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the
// data area, which starts after the header and has `data_size` bytes).
absl::StatusOr<TensorView> ParseEntry(const std::string& name, const json& e, const uint8_t* data_area,
                                      uint64_t data_size, std::string_view source) {
  const std::string where = absl::StrCat("tensor '", name, "'");
  if (!e.is_object()) return Invalid(source, absl::StrCat(where, ": expected an object, got ", e.type_name()));
  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) return Invalid(source, absl::StrCat(where, ": missing or non-string 'dtype'"));
  const std::string& dts = dt->get_ref<const std::string&>();
  TensorView t;
  t.name = name;
  if (dts == "F32") {
    t.dtype = DType::kF32;
  } else if (dts == "F16") {
    t.dtype = DType::kF16;
  } else if (dts == "BF16") {
    t.dtype = DType::kBF16;
  } else {
    return absl::UnimplementedError(absl::StrCat(AV(source), ": ", where, ": unsupported dtype '", dts.substr(0, 64),
                                                 "' (supported: F32, F16, BF16)"));
  }
  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) return Invalid(source, absl::StrCat(where, ": missing or non-list 'shape'"));
  if (sh->size() > 8) return Invalid(source, absl::StrCat(where, ": shape has ", sh->size(), " dimensions (max 8)"));
  auto off = e.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (off == e.end() || !off->is_array() || off->size() != 2 || !GetU64((*off)[0], &begin) || !GetU64((*off)[1], &end)) {
    return Invalid(source, absl::StrCat(where, ": 'data_offsets' must be [begin, end] non-negative integers"));
  }
  if (begin > end || end > data_size) {
    return Invalid(source, absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] outside the data area of ", data_size,
                                        " bytes", end > data_size ? " (truncated file?)" : ""));
  }
  // numel * elemsize must equal span = end - begin; products are only formed while <= span (no overflow).
  const uint64_t esize = DTypeSize(t.dtype), span = end - begin;
  uint64_t numel = 1;
  bool zero = false, too_big = false;
  for (const json& d : *sh) {
    uint64_t dim = 0;
    if (!GetU64(d, &dim) || dim > static_cast<uint64_t>(INT64_MAX)) {
      return Invalid(source, absl::StrCat(where, ": shape entries must be non-negative integers, got ", d.dump()));
    }
    t.shape.push_back(static_cast<int64_t>(dim));
    if (dim == 0) zero = true;
    if (!too_big && dim != 0 && numel > span / dim) too_big = true;
    if (!too_big) numel *= dim;
  }
  if (!zero && (too_big || numel > span / esize || numel * esize != span)) {
    return Invalid(source, absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] span ", span, " bytes but shape ",
                                        sh->dump(), " of ", dts, " needs ",
                                        too_big || numel > span / esize ? std::string("more") : absl::StrCat(numel * esize)));
  }
  if (zero && span != 0) {
    return Invalid(source, absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] span ", span, " bytes but shape ",
                                        sh->dump(), " is empty"));
  }
  const uint64_t nbytes = span;
  t.data = data_area + begin;
  t.nbytes = static_cast<size_t>(nbytes);
  return t;
}

// Whole file into memory (the index file is small).
absl::StatusOr<std::string> ReadSmallFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return ss.str();
}

// A shard name from the index must be a plain relative path inside the checkpoint directory.
bool SafeShardName(const std::string& s) {
  if (s.empty() || s.find('\0') != std::string::npos) return false;
  std::filesystem::path p(s);
  if (p.is_absolute() || p.has_root_name()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const uint8_t* data, size_t size, std::string_view source) {
  if (size < 8) return Invalid(source, absl::StrCat("file too small (", size, " bytes) for a safetensors header"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian u64
  if (n > size - 8) {
    return Invalid(source, absl::StrCat("header length ", n, " exceeds the file size (", size, " bytes)"));
  }
  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  json header;
  try {
    header = json::parse(hbegin, hbegin + n);
  } catch (const json::exception& e) {
    return Invalid(source, absl::StrCat("malformed JSON header: ", e.what()));
  }
  if (!header.is_object()) return Invalid(source, absl::StrCat("header is not a JSON object (", header.type_name(), ")"));
  const uint8_t* data_area = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<TensorView> out;
  out.reserve(header.size());
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return Invalid(source, "'__metadata__' must be an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) return Invalid(source, absl::StrCat("'__metadata__' entry '", mk, "' is not a string"));
      }
      continue;
    }
    LS_ASSIGN_OR_RETURN(TensorView t, ParseEntry(key, value, data_area, data_size, source));
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::filesystem::path& path) {
  const std::string name = path.string();
  int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(name, ": not found"));
    return absl::PermissionDeniedError(absl::StrCat(name, ": cannot open: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(name, "not a regular file");
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_size_ = static_cast<size_t>(st.st_size);
  if (f->map_size_ > 0) {
    void* m = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      f->map_size_ = 0;
      return absl::ResourceExhaustedError(absl::StrCat(name, ": mmap failed: ", std::strerror(err)));
    }
    f->map_ = m;
  }
  ::close(fd);  // the mapping stays valid
  LS_ASSIGN_OR_RETURN(f->tensors_, ParseSafetensors(static_cast<const uint8_t*>(f->map_), f->map_size_, name));
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_.emplace(f->tensors_[i].name, i);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<CheckpointFiles>> CheckpointFiles::Open(const std::filesystem::path& dir) {
  auto ck = std::make_unique<CheckpointFiles>();
  const std::filesystem::path single = dir / "model.safetensors";
  const std::filesystem::path index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (std::filesystem::exists(single, ec)) {
    LS_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
    for (const TensorView& t : f->tensors()) {
      ck->index_.emplace(t.name, &t);
      ck->file_of_.emplace(t.name, 0);
    }
    ck->files_.push_back(std::move(f));
    return ck;
  }
  if (!std::filesystem::exists(index, ec)) {
    return absl::NotFoundError(absl::StrCat("no model.safetensors or model.safetensors.index.json in ", dir.string()));
  }
  const std::string iname = index.string();
  LS_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Invalid(iname, absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!j.is_object()) return Invalid(iname, "expected a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) return Invalid(iname, "field 'weight_map': missing or not an object");
  std::map<std::string, size_t> shard_index;  // shard file name -> index into files_
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string() || !SafeShardName(shard.get_ref<const std::string&>())) {
      return Invalid(iname, absl::StrCat("field 'weight_map': tensor '", tensor, "' maps to an invalid shard name ", shard.dump()));
    }
    const std::string& sname = shard.get_ref<const std::string&>();
    auto it = shard_index.find(sname);
    if (it == shard_index.end()) {
      const std::filesystem::path spath = dir / sname;
      if (!std::filesystem::exists(spath, ec)) {
        return absl::NotFoundError(absl::StrCat(iname, ": shard '", sname, "' (holding tensor '", tensor, "') not found at ", spath.string()));
      }
      LS_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(spath));
      it = shard_index.emplace(sname, ck->files_.size()).first;
      ck->files_.push_back(std::move(f));
    }
    const SafetensorsFile& f = *ck->files_[it->second];
    const TensorView* t = f.Find(tensor);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat(iname, ": tensor '", tensor, "' is listed in shard '", sname,
                                              "' but absent from ", f.path().string()));
    }
    ck->index_.emplace(tensor, t);
    ck->file_of_.emplace(tensor, it->second);
  }
  return ck;
}

const TensorView* CheckpointFiles::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> CheckpointFiles::All() const {
  std::vector<const TensorView*> out;
  out.reserve(index_.size());
  for (const auto& [name, t] : index_) out.push_back(t);
  return out;
}

std::filesystem::path CheckpointFiles::FileOf(std::string_view name) const {
  auto it = file_of_.find(name);
  return it == file_of_.end() ? std::filesystem::path() : files_[it->second]->path();
}

}  // namespace layerskip
