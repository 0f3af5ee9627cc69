#pragma once
// A captured CUDA graph (RAII): whatever a function enqueues on a stream, replayed with one launch. The
// buffers and kernel arguments are fixed at capture; the caller rewrites the contents of device buffers
// (positions, ids) on the same stream between launches. CudaModel::CaptureDecodeStep captures one decode
// step with it.
#include <cuda_runtime.h>

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace layerskip::cuda {

class CudaGraph {
 public:
  // Captures what `enqueue` puts on `stream` (thread-local capture mode). An error from `enqueue` or from
  // the capture ends the capture and is returned; the stream is usable afterwards either way.
  static absl::StatusOr<std::unique_ptr<CudaGraph>> Capture(cudaStream_t stream,
                                                            const std::function<absl::Status()>& enqueue);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Enqueues one replay on `stream`.
  absl::Status Launch(cudaStream_t stream);

 private:
  CudaGraph() = default;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace layerskip::cuda
