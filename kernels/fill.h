#pragma once
// Benchmark helpers on the device (CUDA only): random weights made on the device, no host copy of a 16 GB
// model, and a memory-bandwidth probe.

#if LAYERSKIP_WITH_CUDA  // CUDA (fill_cuda.cu); conventions and this guard: kernels/device_weight.h
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_weight.h"

namespace layerskip::cuda {

// data[count] = normal(0, 1) * scale, from a counter-based hash of (seed, index).
cudaError_t FillRandom(DType type, void* data, int64_t count, uint64_t seed, float scale, cudaStream_t stream);
// data[count] = value (f32).
cudaError_t FillConstant(float* data, int64_t count, float value, cudaStream_t stream);
// Reads `bytes` of src and writes a checksum (a memory-bandwidth probe): sum of every 32-bit word to out[0].
cudaError_t ReadBandwidthProbe(const void* src, int64_t bytes, unsigned int* out, cudaStream_t stream);

}  // namespace layerskip::cuda
#endif  // LAYERSKIP_WITH_CUDA
