#pragma once
// ActivationTransport over NCCL point-to-point (ncclSend / ncclRecv) between GPU workers: stage i is rank
// i, sends to rank i+1 and receives from rank i-1. Rank 0 creates the ncclUniqueId (NewNcclUniqueId); the
// coordinator hands it to every rank over gRPC (Worker.GetNcclId, then Worker.Connect). Compiled only when
// CUDA and NCCL are found (LAYERSKIP_HAVE_NCCL); its GPU run is a later issue.
//
// NCCL has no tags: frames are received in the order they were sent, so a receiver must serve rounds in
// send order; Recv checks the (round, step) of the header it gets and fails on a mismatch. The host
// activations are staged through device buffers (the compute path is CPU today).
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "transport/activation_transport.h"

namespace layerskip {

// The opaque bytes of a new ncclUniqueId (rank 0 calls this).
absl::StatusOr<std::string> NewNcclUniqueId();

class NcclTransport : public ActivationTransport {
 public:
  // ncclCommInitRank on `device` with the id from rank 0.
  static absl::StatusOr<std::unique_ptr<NcclTransport>> Create(const std::string& unique_id, int rank,
                                                               int num_ranks, int device);
  ~NcclTransport() override;

  absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) override;
  absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled) override;
  TransportStats stats() const override { return stats_; }

 private:
  struct Impl;
  explicit NcclTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  TransportStats stats_;
};

}  // namespace layerskip
