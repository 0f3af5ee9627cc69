#include "engine/core/matrix.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <sys/mman.h>

#include "engine/util/bf16.h"

namespace layerskip {
namespace {

constexpr size_t kAlign = 64;
// Buffers of at least this size come from mmap: already zero, page-aligned, and faulted in by whichever
// thread first writes them (in parallel when loading or generating).
constexpr size_t kMmapThreshold = size_t{1} << 20;

}  // namespace

const char* WeightTypeName(WeightType t) {
  switch (t) {
    case WeightType::kBF16: return "bf16";
    case WeightType::kF32: return "f32";
    case WeightType::kInt8: return "int8";
  }
  return "?";
}

namespace {

// A zero-filled, 64-byte aligned buffer of `bytes`: mmap for large ones (see kMmapThreshold).
void* AllocateZeroed(size_t bytes) {
  if (bytes >= kMmapThreshold) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Decoding streams every weight once per token: ask for 2 MiB pages (fewer TLB misses) where the
    // kernel offers them (this development VM does not: AnonHugePages stays 0).
    ::madvise(p, bytes, MADV_HUGEPAGE);
    return p;
  }
  const size_t alloc = std::max(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);  // aligned_alloc needs a multiple
  void* p = std::aligned_alloc(kAlign, alloc);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, alloc);
  return p;
}

void Release(void* p, size_t bytes) {
  if (bytes >= kMmapThreshold) {
    ::munmap(p, bytes);
  } else {
    std::free(p);
  }
}

}  // namespace

Matrix::Matrix(WeightType type, int64_t rows, int64_t cols) : type_(type), rows_(rows), cols_(cols) {
  if (rows < 0 || cols < 0) throw std::bad_array_new_length();
  const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
  if (type == WeightType::kInt8) {
    const size_t stride = static_cast<size_t>(Int8PaddedCols(cols));
    // Data, then the scales at the next 64-byte boundary, in one allocation.
    const size_t data_bytes = (r * stride + kAlign - 1) / kAlign * kAlign;
    const size_t scale_bytes = r * (stride / kInt8Group) * sizeof(float);
    alloc_bytes_ = std::max<size_t>(1, data_bytes + scale_bytes);
    data_ = AllocateZeroed(alloc_bytes_);
    std::memset(data_, 128, r * stride);  // +128 offset: every weight 0
    scales_ = reinterpret_cast<float*>(static_cast<char*>(data_) + data_bytes);
    bytes_ = r * stride + scale_bytes;
    return;
  }
  bytes_ = r * c * (type == WeightType::kBF16 ? 2 : 4);
  alloc_bytes_ = bytes_;
  data_ = AllocateZeroed(alloc_bytes_);
}

Matrix::Matrix(WeightType type, int64_t rows, int64_t cols, const void* data, std::shared_ptr<const void> owner)
    : type_(type), rows_(rows), cols_(cols), data_(const_cast<void*>(data)), owner_(std::move(owner)) {
  if (rows < 0 || cols < 0 || type == WeightType::kInt8 || owner_ == nullptr) throw std::invalid_argument("Matrix: bad in-place view");
  bytes_ = static_cast<size_t>(rows) * static_cast<size_t>(cols) * (type == WeightType::kBF16 ? 2 : 4);
}

Matrix::~Matrix() {
  if (owner_ == nullptr) Release(data_, alloc_bytes_);
}

float Matrix::At(int64_t r, int64_t c) const {
  if (type_ == WeightType::kInt8) {
    const int q = static_cast<int>(int8()[r * int8_stride() + Int8Position(c)]) - 128;
    return static_cast<float>(q) * scales_[r * (int8_stride() / kInt8Group) + c / kInt8Group];
  }
  const int64_t i = r * cols_ + c;
  return type_ == WeightType::kBF16 ? Bf16ToF32(bf16()[i]) : f32()[i];
}

}  // namespace layerskip
