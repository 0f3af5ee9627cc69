#pragma once
// ActivationTransport over NCCL point-to-point between GPU workers, one communicator per stage pair
// (transport/nccl_link.h): stage i is rank 0 of the link to stage i+1 and rank 1 of the link from stage
// i-1. The sending stage makes each link's ncclUniqueId (Worker.GetNcclId); the coordinator hands it to
// both ends in Connect. Compiled only when CUDA and NCCL are found (LAYERSKIP_HAVE_NCCL).
//
// No RPC handler waits for a peer's later RPC: Send copies the frame into a queue and returns; a sender
// thread per outbound link posts the header (32 bytes, transport/frame.h) and the rows in queue order; a
// receiver thread per inbound link always has the next header posted, checks it against the shard's limits
// before it receives the rows, and buffers the frame by (round, step) for the Verify that waits for it
// (FrameBuffer: deadline and cancellation). A NCCL error or a stalled transfer aborts that link
// (ncclCommAbort); Send and Recv then fail with UNAVAILABLE, the round fails, and the coordinator re-wires,
// which re-creates the communicators (also after a restarted stage). The activations are staged through
// device buffers (the compute path is CPU today).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "transport/activation_transport.h"
#include "transport/frame.h"
#include "transport/frame_buffer.h"
#include "transport/nccl_link.h"

namespace layerskip {

struct NcclTransportOptions {
  int device = 0;
  std::string next_id;   // the link to the next stage (this stage is rank 0); empty on the last stage
  std::string prev_id;   // the link from the previous stage (rank 1); empty on the first stage
  FrameLimits limits;    // what the inbound link accepts
  absl::Duration transfer_timeout = absl::Seconds(30);  // one started send or rows receive
  absl::Duration init_timeout = absl::Seconds(60);
};

class NcclTransport : public ActivationTransport {
 public:
  // Initialises both links (non-blocking, together: neither end waits for the other's Connect order).
  static absl::StatusOr<std::unique_ptr<NcclTransport>> Create(const NcclTransportOptions& options);
  ~NcclTransport() override;  // stops the threads, aborts the communicators

  absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) override;
  absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled) override;
  TransportStats stats() const override;

 private:
  explicit NcclTransport(const NcclTransportOptions& options) : options_(options) {}
  void SendLoop();
  void RecvLoop();
  absl::Status LinkStatus(bool inbound) const;

  const NcclTransportOptions options_;
  std::unique_ptr<NcclLink> out_, in_;
  std::atomic<bool> stop_{false};
  std::thread sender_, receiver_;

  mutable std::mutex mu_;  // guards the queue, the link statuses and the stats
  std::condition_variable cv_;
  std::deque<Frame> queue_;
  absl::Status out_failed_, in_failed_;
  TransportStats stats_;
  FrameBuffer frames_;
};

}  // namespace layerskip
