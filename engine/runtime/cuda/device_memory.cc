#include "engine/runtime/cuda/device_memory.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"
#include "kernels/cuda_common.h"

namespace layerskip::cuda {

absl::StatusOr<DeviceMemory> QueryDeviceMemory(int device) {
  const int count = DeviceCount();
  if (device < 0 || device >= count)
    return absl::InvalidArgumentError(absl::StrCat("cuda:", device, ": no such device (", count, " visible)"));
  int previous = 0;
  LS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&previous));
  LS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t err = cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaSetDevice(previous);
  LS_RETURN_IF_ERROR(CudaStatus(err, "cudaMemGetInfo"));
  return DeviceMemory{static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

}  // namespace layerskip::cuda
