# The CUDA backend (included from the top-level CMakeLists.txt when LAYERSKIP_CUDA is ON):
#   layerskip_cuda = kernels/*_cuda.cu (the ops) + engine/runtime/cuda/ (device weights, KV cache, forward,
#   greedy decoding) and the GPU tests in tests/gpu/ (ctest label "gpu"; they skip without a device).
# -fmad=false: like -ffp-contract=off on the CPU, only the fmaf() calls the source spells are fused, so a
# kernel's arithmetic is exactly what it reads as (batch invariance is argued from the source).
file(GLOB LAYERSKIP_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/kernels/*_cuda.cu
  ${CMAKE_SOURCE_DIR}/engine/runtime/cuda/*.cc
  ${CMAKE_SOURCE_DIR}/engine/runtime/cuda/*.cu)
add_library(layerskip_cuda STATIC ${LAYERSKIP_CUDA_SOURCES})
target_include_directories(layerskip_cuda PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(layerskip_cuda PUBLIC layerskip_decode layerskip_runtime layerskip_kernels layerskip_model CUDA::cudart)
target_compile_options(layerskip_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-fmad=false;--Werror=all-warnings;-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>)
set_target_properties(layerskip_cuda PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)

add_subdirectory(${CMAKE_SOURCE_DIR}/tests/gpu ${CMAKE_BINARY_DIR}/tests/gpu)
