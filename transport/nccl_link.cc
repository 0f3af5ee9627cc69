#include "transport/nccl_link.h"

#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

absl::Status CudaError(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status NcclError(ncclResult_t r, const char* what) {
  if (r == ncclSuccess || r == ncclInProgress) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}

void Pause() { std::this_thread::sleep_for(std::chrono::microseconds(50)); }

}  // namespace

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
    return absl::UnavailableError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::unique_ptr<NcclLink>> NcclLink::Start(const std::string& unique_id, int rank, int num_ranks, int device) {
  if (unique_id.size() != sizeof(ncclUniqueId))
    return absl::InvalidArgumentError(absl::StrCat("ncclUniqueId has ", unique_id.size(), " bytes, expected ", sizeof(ncclUniqueId)));
  if (rank < 0 || rank >= num_ranks) return absl::InvalidArgumentError("NCCL rank outside [0, num_ranks)");
  std::unique_ptr<NcclLink> l(new NcclLink());
  l->device_ = device;
  if (absl::Status s = CudaError(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  if (absl::Status s = CudaError(cudaStreamCreateWithFlags(&l->stream_, cudaStreamNonBlocking), "cudaStreamCreate"); !s.ok())
    return s;
  ncclUniqueId id;
  std::memcpy(&id, unique_id.data(), sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  if (absl::Status s = NcclError(ncclCommInitRankConfig(&l->comm_, num_ranks, id, rank, &config), "ncclCommInitRankConfig");
      !s.ok())
    return s;
  return l;
}

NcclLink::~NcclLink() {
  if (comm_) {
    cudaSetDevice(device_);
    ncclCommAbort(comm_);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclLink::Abort(const absl::Status& why) {
  if (failed_.ok()) failed_ = why;
  if (comm_) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
}

absl::Status NcclLink::Wait(cudaStream_t stream, absl::Time deadline, const std::atomic<bool>* stop, const char* what) {
  for (;;) {
    ncclResult_t async = ncclSuccess;
    if (comm_) ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      const absl::Status s = absl::UnavailableError(absl::StrCat(what, ": ", ncclGetErrorString(async)));
      Abort(s);
      return s;
    }
    if (stream == nullptr) {
      if (async == ncclSuccess) return absl::OkStatus();
    } else {
      const cudaError_t q = cudaStreamQuery(stream);
      if (q == cudaSuccess && async == ncclSuccess) return absl::OkStatus();
      if (q != cudaSuccess && q != cudaErrorNotReady) {
        const absl::Status s = CudaError(q, what);
        Abort(s);
        return s;
      }
    }
    if (stop && stop->load()) {
      Abort(absl::CancelledError("the link was closed"));
      return absl::CancelledError(absl::StrCat(what, ": the link was closed"));
    }
    if (absl::Now() >= deadline) {
      const absl::Status s = absl::UnavailableError(absl::StrCat(what, ": no progress before the deadline (peer gone or stalled)"));
      Abort(s);
      return s;
    }
    Pause();
  }
}

absl::Status NcclLink::Ready(absl::Time deadline) {
  if (!failed_.ok()) return failed_;
  return Wait(nullptr, deadline, nullptr, "ncclCommInitRankConfig");
}

absl::Status NcclLink::Send(const void* device, size_t bytes, int peer, absl::Time deadline, const std::atomic<bool>* stop) {
  if (!failed_.ok()) return failed_;
  cudaSetDevice(device_);
  if (absl::Status s = NcclError(ncclSend(device, bytes, ncclUint8, peer, comm_, stream_), "ncclSend"); !s.ok()) {
    Abort(s);
    return s;
  }
  return Wait(stream_, deadline, stop, "ncclSend");
}

absl::Status NcclLink::Recv(void* device, size_t bytes, int peer, absl::Time deadline, const std::atomic<bool>* stop) {
  if (!failed_.ok()) return failed_;
  cudaSetDevice(device_);
  if (absl::Status s = NcclError(ncclRecv(device, bytes, ncclUint8, peer, comm_, stream_), "ncclRecv"); !s.ok()) {
    Abort(s);
    return s;
  }
  return Wait(stream_, deadline, stop, "ncclRecv");
}

absl::Status NcclLink::CopyIn(void* device, const void* host, size_t bytes, absl::Time deadline, const std::atomic<bool>* stop) {
  if (!failed_.ok()) return failed_;
  cudaSetDevice(device_);
  if (absl::Status s = CudaError(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "copy to device");
      !s.ok())
    return s;
  return Wait(stream_, deadline, stop, "copy to device");
}

absl::Status NcclLink::CopyOut(void* host, const void* device, size_t bytes, absl::Time deadline, const std::atomic<bool>* stop) {
  if (!failed_.ok()) return failed_;
  cudaSetDevice(device_);
  if (absl::Status s = CudaError(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
      !s.ok())
    return s;
  return Wait(stream_, deadline, stop, "copy to host");
}

absl::Status NcclLoopbackCheck(int device, size_t floats) {
  auto id = NewNcclUniqueId();
  if (!id.ok()) return id.status();
  auto link = NcclLink::Start(*id, 0, 1, device);
  if (!link.ok()) return link.status();
  NcclLink& l = **link;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  if (absl::Status s = l.Ready(deadline); !s.ok()) return s;
  std::vector<float> host(floats), back(floats, 0.0f);
  for (size_t i = 0; i < floats; ++i) host[i] = 0.25f * static_cast<float>(i) - 3.0f;
  void *src = nullptr, *dst = nullptr;
  if (absl::Status s = CudaError(cudaMalloc(&src, floats * sizeof(float) + 1), "cudaMalloc"); !s.ok()) return s;
  if (absl::Status s = CudaError(cudaMalloc(&dst, floats * sizeof(float) + 1), "cudaMalloc"); !s.ok()) {
    cudaFree(src);
    return s;
  }
  absl::Status s = l.CopyIn(src, host.data(), floats * sizeof(float), deadline, nullptr);
  if (s.ok()) {  // send to and receive from rank 0 itself: one group, or the send would wait for the receive
    ncclGroupStart();
    ncclSend(src, floats * sizeof(float), ncclUint8, 0, l.comm_, l.stream_);
    ncclRecv(dst, floats * sizeof(float), ncclUint8, 0, l.comm_, l.stream_);
    const ncclResult_t r = ncclGroupEnd();
    s = NcclError(r, "ncclGroupEnd");
    if (s.ok()) s = l.Wait(l.stream_, deadline, nullptr, "loopback send/recv");
  }
  if (s.ok()) s = l.CopyOut(back.data(), dst, floats * sizeof(float), deadline, nullptr);
  cudaFree(src);
  cudaFree(dst);
  if (!s.ok()) return s;
  if (back != host) return absl::DataLossError("NCCL loopback: the received floats differ from the sent ones");
  return absl::OkStatus();
}

}  // namespace layerskip
