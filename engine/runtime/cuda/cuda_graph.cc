#include "engine/runtime/cuda/cuda_graph.h"

#include "kernels/cuda_common.h"

namespace layerskip::cuda {

absl::StatusOr<std::unique_ptr<CudaGraph>> CudaGraph::Capture(cudaStream_t stream,
                                                              const std::function<absl::Status()>& enqueue) {
  std::unique_ptr<CudaGraph> g(new CudaGraph());
  LS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status enqueued = enqueue();
  const cudaError_t end = cudaStreamEndCapture(stream, &g->graph_);  // always: leaves the stream usable
  if (!enqueued.ok()) {
    (void)cudaGetLastError();
    return enqueued;
  }
  LS_CUDA_RETURN_IF_ERROR(end);
  LS_CUDA_RETURN_IF_ERROR(cudaGraphInstantiate(&g->exec_, g->graph_, 0));
  return g;
}

CudaGraph::~CudaGraph() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
}

absl::Status CudaGraph::Launch(cudaStream_t stream) {
  LS_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec_, stream));
  return absl::OkStatus();
}

}  // namespace layerskip::cuda
