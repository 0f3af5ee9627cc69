#pragma once
// A 64-byte aligned scratch buffer that only grows (the matmul kernels' packed x and tiles: loads that
// straddle cache lines would cost a kernel a third of its speed). Plain C++: the per-instruction-set matmul
// files include it before their target pragmas, so its code is the same baseline code in all of them.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace layerskip::cpu {

template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // At least `count` elements (contents not kept when it grows).
  T* Get(int64_t count) {
    if (count > size_ || data_ == nullptr) {
      std::free(data_);
      size_ = count;
      const size_t bytes = std::max<size_t>(64, (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64);
      data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (data_ == nullptr) throw std::bad_alloc();
    }
    return data_;
  }

 private:
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace layerskip::cpu
