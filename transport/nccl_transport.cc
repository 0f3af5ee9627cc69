#include "transport/nccl_transport.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status Nccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  // Remote and system errors mean a peer went away: the stage is unavailable, not broken.
  if (r == ncclRemoteError || r == ncclSystemError)
    return absl::UnavailableError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}

#define LS_NCCL_RETURN(expr)                   \
  do {                                         \
    ::absl::Status ls_s_ = (expr);             \
    if (!ls_s_.ok()) return ls_s_;             \
  } while (0)

// Header as int64 so that it travels as one small ncclInt64 message: round, step, rows, hidden.
constexpr int kHeaderWords = 4;

}  // namespace

struct NcclTransport::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int rank = 0, num_ranks = 0, device = 0;
  int64_t* header = nullptr;  // device [kHeaderWords]
  float* buffer = nullptr;    // device staging buffer
  size_t capacity = 0;        // floats in buffer

  absl::Status Reserve(size_t floats) {
    if (floats <= capacity) return absl::OkStatus();
    if (buffer) cudaFree(buffer);
    buffer = nullptr;
    capacity = 0;
    LS_NCCL_RETURN(Cuda(cudaMalloc(&buffer, floats * sizeof(float)), "cudaMalloc"));
    capacity = floats;
    return absl::OkStatus();
  }
};

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  LS_NCCL_RETURN(Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(const std::string& unique_id, int rank,
                                                                     int num_ranks, int device) {
  if (unique_id.size() != sizeof(ncclUniqueId))
    return absl::InvalidArgumentError(absl::StrCat("ncclUniqueId has ", unique_id.size(), " bytes, expected ",
                                                   sizeof(ncclUniqueId)));
  if (rank < 0 || rank >= num_ranks) return absl::InvalidArgumentError("NCCL rank outside [0, num_ranks)");
  auto impl = std::make_unique<Impl>();
  impl->rank = rank;
  impl->num_ranks = num_ranks;
  impl->device = device;
  LS_NCCL_RETURN(Cuda(cudaSetDevice(device), "cudaSetDevice"));
  LS_NCCL_RETURN(Cuda(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  LS_NCCL_RETURN(Cuda(cudaMalloc(&impl->header, kHeaderWords * sizeof(int64_t)), "cudaMalloc"));
  ncclUniqueId id;
  std::memcpy(&id, unique_id.data(), sizeof(id));
  LS_NCCL_RETURN(Nccl(ncclCommInitRank(&impl->comm, num_ranks, id, rank), "ncclCommInitRank"));
  return std::unique_ptr<NcclTransport>(new NcclTransport(std::move(impl)));
}

NcclTransport::NcclTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclTransport::~NcclTransport() {
  if (impl_->comm) ncclCommAbort(impl_->comm);  // never blocks on a dead peer
  if (impl_->buffer) cudaFree(impl_->buffer);
  if (impl_->header) cudaFree(impl_->header);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

absl::Status NcclTransport::Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) {
  Impl& m = *impl_;
  if (m.rank + 1 >= m.num_ranks) return absl::FailedPreconditionError("the last NCCL rank has no next stage");
  const size_t n = static_cast<size_t>(rows) * hidden;
  const int64_t header[kHeaderWords] = {static_cast<int64_t>(round), step, rows, hidden};
  LS_NCCL_RETURN(m.Reserve(n));
  LS_NCCL_RETURN(Cuda(cudaMemcpyAsync(m.header, header, sizeof(header), cudaMemcpyHostToDevice, m.stream), "copy header"));
  if (n > 0) LS_NCCL_RETURN(Cuda(cudaMemcpyAsync(m.buffer, x, n * sizeof(float), cudaMemcpyHostToDevice, m.stream), "copy rows"));
  LS_NCCL_RETURN(Nccl(ncclSend(m.header, kHeaderWords, ncclInt64, m.rank + 1, m.comm, m.stream), "ncclSend header"));
  if (n > 0) LS_NCCL_RETURN(Nccl(ncclSend(m.buffer, n, ncclFloat32, m.rank + 1, m.comm, m.stream), "ncclSend rows"));
  LS_NCCL_RETURN(Cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize"));
  stats_.bytes_sent += static_cast<int64_t>(sizeof(header) + n * sizeof(float));
  return absl::OkStatus();
}

absl::Status NcclTransport::Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                                 absl::Time deadline, const std::function<bool()>& cancelled) {
  Impl& m = *impl_;
  if (m.rank == 0) return absl::FailedPreconditionError("NCCL rank 0 has no previous stage");
  int64_t header[kHeaderWords];
  LS_NCCL_RETURN(Nccl(ncclRecv(m.header, kHeaderWords, ncclInt64, m.rank - 1, m.comm, m.stream), "ncclRecv header"));
  LS_NCCL_RETURN(Cuda(cudaMemcpyAsync(header, m.header, sizeof(header), cudaMemcpyDeviceToHost, m.stream), "copy header"));
  LS_NCCL_RETURN(Cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize"));
  if (static_cast<uint64_t>(header[0]) != round || header[1] != step || header[3] != hidden ||
      (expected_rows >= 0 && header[2] != expected_rows))
    return absl::FailedPreconditionError(absl::StrCat("NCCL frame out of order: got round ", header[0], " [", header[2],
                                                      ", ", header[3], "], expected round ", round));
  const size_t n = static_cast<size_t>(header[2]) * hidden;
  x->resize(n);
  if (n > 0) {
    LS_NCCL_RETURN(m.Reserve(n));
    LS_NCCL_RETURN(Nccl(ncclRecv(m.buffer, n, ncclFloat32, m.rank - 1, m.comm, m.stream), "ncclRecv rows"));
    LS_NCCL_RETURN(Cuda(cudaMemcpyAsync(x->data(), m.buffer, n * sizeof(float), cudaMemcpyDeviceToHost, m.stream), "copy rows"));
    LS_NCCL_RETURN(Cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize"));
  }
  stats_.bytes_received += static_cast<int64_t>(sizeof(header) + n * sizeof(float));
  return absl::OkStatus();
}

}  // namespace layerskip
