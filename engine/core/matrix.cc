#include "engine/core/matrix.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sys/mman.h>

#include "engine/util/bf16.h"

namespace layerskip {
namespace {

constexpr size_t kAlign = 64;
// Buffers of at least this size come from mmap: already zero, page-aligned, and faulted in by whichever
// thread first writes them (in parallel when loading or generating).
constexpr size_t kMmapThreshold = size_t{1} << 20;

}  // namespace

const char* WeightTypeName(WeightType t) { return t == WeightType::kBF16 ? "bf16" : "f32"; }

Matrix::Matrix(WeightType type, int64_t rows, int64_t cols) : type_(type), rows_(rows), cols_(cols) {
  if (rows < 0 || cols < 0) throw std::bad_array_new_length();
  bytes_ = static_cast<size_t>(rows) * static_cast<size_t>(cols) * (type == WeightType::kBF16 ? 2 : 4);
  if (bytes_ >= kMmapThreshold) {
    data_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data_ == MAP_FAILED) throw std::bad_alloc();
    // Decoding streams every weight once per token: ask for 2 MiB pages (fewer TLB misses) where the
    // kernel offers them (this development VM does not: AnonHugePages stays 0).
    ::madvise(data_, bytes_, MADV_HUGEPAGE);
    return;
  }
  const size_t alloc = std::max(kAlign, (bytes_ + kAlign - 1) / kAlign * kAlign);  // aligned_alloc needs a multiple
  data_ = std::aligned_alloc(kAlign, alloc);
  if (data_ == nullptr) throw std::bad_alloc();
  std::memset(data_, 0, alloc);
}

Matrix::~Matrix() {
  if (bytes_ >= kMmapThreshold) {
    ::munmap(data_, bytes_);
  } else {
    std::free(data_);
  }
}

float Matrix::At(int64_t r, int64_t c) const {
  const int64_t i = r * cols_ + c;
  return type_ == WeightType::kBF16 ? Bf16ToF32(bf16()[i]) : f32()[i];
}

}  // namespace layerskip
