#pragma once
// ActivationTransport over CUDA IPC between two stages on one GPU (two worker processes, --transport ipc).
// The authenticated TCP link (TcpTransport) still carries each frame's header, in order, but its payload is
// an 80-byte reference (transport/frame.h, kFrameInDevice: ring handle, ring size, sequence number n) to the
// rows in the sender's device memory:
//
//   sender: a ring of kSlots slots in one cudaMalloc (exported once with cudaIpcGetMemHandle), preceded by
//           an acknowledgement word; frame n goes to slot n % kSlots once the receiver has acknowledged
//           frame n - kSlots (polled, bounded by the send timeout); a frame larger than a slot waits until
//           every frame is acknowledged and moves to a new, larger ring (a new handle).
//   receiver: on its TCP receiver thread, opens the sender's handle (cached; a new handle closes the old
//           mapping), copies the rows out, and writes n into the acknowledgement word.
//
// Compiled only with CUDA (LAYERSKIP_HAVE_CUDA_IPC). The worker's service hands rows over on the host
// (Backend::Download / Upload), so they are copied host -> device on the sender and device -> host on the
// receiver; the sender waits for its copy to land before it sends the header.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"
#include "transport/activation_transport.h"
#include "transport/tcp_transport.h"

namespace layerskip {

class IpcTransport : public ActivationTransport {
 public:
  static constexpr int kSlots = 4;

  // Over `tcp` (which outlives this object), on `device`. Installs the receiver's resolver on tcp.
  static absl::StatusOr<std::unique_ptr<IpcTransport>> Create(TcpTransport* tcp, int device, absl::Duration send_timeout);
  ~IpcTransport() override;  // removes the resolver, frees the ring, closes the mapping

  absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) override;
  absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled) override;
  TransportStats stats() const override { return tcp_->stats(); }

 private:
  IpcTransport(TcpTransport* tcp, int device, absl::Duration send_timeout)
      : tcp_(tcp), device_(device), send_timeout_(send_timeout) {}
  absl::Status WaitAcked(uint64_t n, absl::Time deadline);  // send_mu_ held
  absl::Status EnsureRing(size_t slot_bytes, absl::Time deadline);  // send_mu_ held

  TcpTransport* tcp_;
  const int device_;
  const absl::Duration send_timeout_;

  std::mutex send_mu_;  // the sender's ring
  uint8_t* ring_ = nullptr;  // [ack word (256 bytes)][kSlots x slot_bytes_]
  size_t slot_bytes_ = 0;
  cudaIpcMemHandle_t handle_{};
  uint64_t next_ = 1;  // sequence number of the next frame sent

  // The receiving side: the mapping of the previous stage's ring. Shared with the resolver installed on the
  // TCP transport, so a frame being resolved keeps it alive after this transport is gone.
  struct Receiver {
    int device = 0;
    std::mutex mu;
    std::array<uint8_t, sizeof(cudaIpcMemHandle_t)> handle{};
    uint8_t* mapped = nullptr;
    absl::Status Resolve(Frame* f);  // the TCP receiver thread: copy the rows out, acknowledge
    ~Receiver();
  };
  std::shared_ptr<Receiver> receiver_;
};

}  // namespace layerskip
