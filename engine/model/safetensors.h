#pragma once
// Safetensors reader: an 8-byte little-endian header length, a JSON header, then raw tensor data.
// Files are memory-mapped; TensorView points into the mapping.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace layerskip {

enum class DType { kF32, kF16, kBF16 };
const char* DTypeName(DType t);      // "F32", "F16", "BF16"
size_t DTypeSize(DType t);           // bytes per element

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  size_t nbytes = 0;
  int64_t numel() const;
};

// Parses a whole safetensors byte buffer (header + data). Checks: size >= 8, header length within the buffer,
// valid JSON object, known dtypes (others -> Unimplemented naming the tensor and dtype), shapes non-negative,
// data_offsets [begin,end) inside the data area with end-begin == numel*dtype size, no overflow.
// `source` (a file name) appears in every error message. Views point into `data`.
absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const uint8_t* data, size_t size, std::string_view source);

// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(std::string_view name) const;  // nullptr if absent
  const std::filesystem::path& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file).
class CheckpointFiles {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointFiles>> Open(const std::filesystem::path& dir);
  const TensorView* Find(std::string_view name) const;  // nullptr if absent
  std::vector<const TensorView*> All() const;
  // The file holding tensor `name` (empty if absent); for error messages.
  std::filesystem::path FileOf(std::string_view name) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
  std::map<std::string, size_t, std::less<>> file_of_;  // tensor name -> index into files_
};

}  // namespace layerskip
