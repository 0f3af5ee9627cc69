#pragma once
// One NCCL communicator for one stage pair (two ranks: 0 = the sending stage, 1 = the receiving stage), used
// by one thread only, so sends and receives of different links never share a communicator and each link
// keeps its own order. Non-blocking (ncclConfig_t.blocking = 0): every call returns at once and Wait polls
// the stream and ncclCommGetAsyncError until the operation is done, its deadline passes or `stop` is set;
// on an error or the deadline the communicator is aborted (ncclCommAbort) and the link is dead: the
// coordinator re-wires (a new ncclUniqueId per link, a fresh communicator) after a failed round or a
// restarted stage. Compiled only with CUDA and NCCL (LAYERSKIP_HAVE_NCCL).
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace layerskip {

absl::Status NcclLoopbackCheck(int device, size_t floats);

class NcclLink {
 public:
  // Starts ncclCommInitRankConfig (non-blocking) for `rank` of `num_ranks` on `device`; Ready() finishes it.
  static absl::StatusOr<std::unique_ptr<NcclLink>> Start(const std::string& unique_id, int rank, int num_ranks, int device);
  ~NcclLink();  // ncclCommAbort: never blocks on a dead peer

  // Waits for the communicator's initialisation (both ranks must start theirs) until `deadline`.
  absl::Status Ready(absl::Time deadline);
  // bytes from/to device memory, peer rank; returns when the transfer is complete. UNAVAILABLE (aborted) on
  // a NCCL error or the deadline, CANCELLED (aborted) when *stop becomes true.
  absl::Status Send(const void* device, size_t bytes, int peer, absl::Time deadline, const std::atomic<bool>* stop);
  absl::Status Recv(void* device, size_t bytes, int peer, absl::Time deadline, const std::atomic<bool>* stop);
  // Host <-> device copies on the link's stream, waited like the transfers.
  absl::Status CopyIn(void* device, const void* host, size_t bytes, absl::Time deadline, const std::atomic<bool>* stop);
  absl::Status CopyOut(void* host, const void* device, size_t bytes, absl::Time deadline, const std::atomic<bool>* stop);
  // Aborts the communicator (idempotent); later calls fail with `why`.
  void Abort(const absl::Status& why);
  const absl::Status& failed() const { return failed_; }
  int device() const { return device_; }

 private:
  friend absl::Status NcclLoopbackCheck(int device, size_t floats);
  NcclLink() = default;
  // Polls until the stream's work is done (or, with stream == nullptr, the communicator's pending call).
  absl::Status Wait(cudaStream_t stream, absl::Time deadline, const std::atomic<bool>* stop, const char* what);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  absl::Status failed_;
};

// One-rank check of the NCCL path on `device`: a communicator of one rank sends `floats` floats to itself
// (ncclSend + ncclRecv in one group, non-blocking, polled) and they must arrive intact.
absl::Status NcclLoopbackCheck(int device, size_t floats);

// The opaque bytes of a new ncclUniqueId (the sending stage of a link makes it).
absl::StatusOr<std::string> NewNcclUniqueId();

}  // namespace layerskip
