#pragma once
// Stands in for CUDA's cuda_runtime_api.h in the host-only compile of the op headers (tests/layering/CMakeLists.txt), so
// the check fails even on a machine where CUDA's headers are on the default include path.
#error "a CPU-only build includes cuda_runtime_api.h: put the header's CUDA part inside #if LAYERSKIP_WITH_CUDA (kernels/device_weight.h)"
