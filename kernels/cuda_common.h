#pragma once
// Host-side CUDA helpers for the engine: CUDA errors as absl::Status (never exit), and an owning device
// buffer. Included by host C++ (engine/runtime/cuda/, tests/gpu/), not by the .cu kernel files.
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/util/status.h"

namespace layerskip::cuda {

// OK for cudaSuccess, else Internal "<what>: <cuda error name>: <message>".
inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
}

// Returns from the enclosing function (absl::Status or StatusOr) if a CUDA call fails.
#define LS_CUDA_RETURN_IF_ERROR(expr) LS_RETURN_IF_ERROR(::layerskip::cuda::CudaStatus((expr), #expr))

// Number of CUDA devices, 0 when there is no driver or no device (never an error).
inline int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

// An owning buffer of `size` elements of T in device memory (uninitialised).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  static absl::StatusOr<DeviceBuffer> Alloc(size_t size) {
    DeviceBuffer b;
    if (size > 0) {
      void* p = nullptr;
      LS_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, size * sizeof(T)));
      b.data_ = static_cast<T*>(p);
      b.size_ = size;
    }
    return b;
  }
  // Allocates and copies host data; the data is on the device for every stream when this returns. (A plain
  // cudaMemcpy runs on the legacy stream, which the engine's non-blocking streams do not wait for, and a
  // pageable copy may still be in flight when it returns.)
  static absl::StatusOr<DeviceBuffer> FromHost(const T* host, size_t size) {
    LS_ASSIGN_OR_RETURN(DeviceBuffer b, Alloc(size));
    if (size > 0) {
      LS_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.data_, host, size * sizeof(T), cudaMemcpyHostToDevice));
      LS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    }
    return b;
  }
  static absl::StatusOr<DeviceBuffer> FromHost(const std::vector<T>& host) { return FromHost(host.data(), host.size()); }

  // Copies the whole buffer to host after all work queued on any stream (the engine's streams are
  // non-blocking, so a plain cudaMemcpy would not wait for their kernels).
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> out(size_);
    if (size_ > 0) {
      LS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
      LS_CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    }
    return out;
  }

  T* get() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void Reset() {
    if (data_) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace layerskip::cuda
