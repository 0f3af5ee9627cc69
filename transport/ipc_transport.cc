#include "transport/ipc_transport.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

constexpr size_t kAckBytes = 256;  // the acknowledgement word, padded so slots stay aligned

absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("CUDA IPC: ", what, ": ", cudaGetErrorString(e)));
}

// The 80-byte reference: the ring's handle (64), the ring's size in bytes (u64), the frame's sequence
// number n (u64); its rows are in slot n % kSlots.
struct DeviceRef {
  cudaIpcMemHandle_t handle;
  uint64_t ring_bytes;
  uint64_t sequence;
};
static_assert(sizeof(cudaIpcMemHandle_t) == 64 && sizeof(DeviceRef) == kDeviceRefBytes, "device reference layout");

}  // namespace

absl::StatusOr<std::unique_ptr<IpcTransport>> IpcTransport::Create(TcpTransport* tcp, int device, absl::Duration send_timeout) {
  if (absl::Status s = Cuda(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  std::unique_ptr<IpcTransport> t(new IpcTransport(tcp, device, send_timeout));
  t->receiver_ = std::make_shared<Receiver>();
  t->receiver_->device = device;
  tcp->SetDeviceFrameResolver([r = t->receiver_](Frame* f) { return r->Resolve(f); }, t.get());
  return t;
}

IpcTransport::~IpcTransport() {
  tcp_->ClearDeviceFrameResolver(this);  // the mapping goes with the last frame being resolved
  std::lock_guard<std::mutex> lock(send_mu_);
  cudaSetDevice(device_);
  if (ring_) cudaFree(ring_);
}

IpcTransport::Receiver::~Receiver() {
  cudaSetDevice(device);
  if (mapped) cudaIpcCloseMemHandle(mapped);
}

absl::Status IpcTransport::WaitAcked(uint64_t n, absl::Time deadline) {
  for (;;) {
    uint64_t acked = 0;
    if (absl::Status s = Cuda(cudaMemcpy(&acked, ring_, sizeof(acked), cudaMemcpyDeviceToHost), "read the acknowledgement");
        !s.ok())
      return s;
    if (acked >= n) return absl::OkStatus();
    if (absl::Now() >= deadline)
      return absl::UnavailableError(absl::StrCat("CUDA IPC: the next stage has not taken frame ", n, " (it took ", acked, ")"));
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

absl::Status IpcTransport::EnsureRing(size_t slot_bytes, absl::Time deadline) {
  if (ring_ && slot_bytes <= slot_bytes_) return absl::OkStatus();
  if (ring_) {  // the receiver may still read the old ring: wait for every frame, then replace it
    if (absl::Status s = WaitAcked(next_ - 1, deadline); !s.ok()) return s;
    cudaFree(ring_);
    ring_ = nullptr;
  }
  const size_t slot = (std::max<size_t>(slot_bytes, 1 << 16) + 255) / 256 * 256;
  void* p = nullptr;
  if (absl::Status s = Cuda(cudaMalloc(&p, kAckBytes + kSlots * slot), "cudaMalloc of the ring"); !s.ok()) return s;
  ring_ = static_cast<uint8_t*>(p);
  slot_bytes_ = slot;
  const uint64_t acked = next_ - 1;  // everything before the new ring counts as taken
  if (absl::Status s = Cuda(cudaMemcpy(ring_, &acked, sizeof(acked), cudaMemcpyHostToDevice), "init the ring"); !s.ok())
    return s;
  return Cuda(cudaIpcGetMemHandle(&handle_, ring_), "cudaIpcGetMemHandle");
}

absl::Status IpcTransport::Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(rows) * static_cast<size_t>(hidden);
  const absl::Time deadline = absl::Now() + send_timeout_;
  std::lock_guard<std::mutex> lock(send_mu_);
  cudaSetDevice(device_);
  if (absl::Status s = EnsureRing(bytes, deadline); !s.ok()) return s;
  const uint64_t n = next_;
  if (n > static_cast<uint64_t>(kSlots)) {
    if (absl::Status s = WaitAcked(n - kSlots, deadline); !s.ok()) return s;  // the slot is free again
  }
  DeviceRef ref{};
  ref.handle = handle_;
  ref.ring_bytes = kAckBytes + kSlots * slot_bytes_;
  ref.sequence = n;
  const size_t offset = kAckBytes + (n % kSlots) * slot_bytes_;
  if (bytes > 0) {
    if (absl::Status s = Cuda(cudaMemcpy(ring_ + offset, x, bytes, cudaMemcpyHostToDevice), "copy the rows in"); !s.ok())
      return s;
    // From pageable memory cudaMemcpy may return before the DMA has landed: the rows must be in the ring
    // before the header tells the receiver to read them.
    if (absl::Status s = Cuda(cudaDeviceSynchronize(), "wait for the rows to land"); !s.ok()) return s;
  }
  FrameHeader h;
  h.round = round;
  h.step = step;
  h.rows = rows;
  h.hidden = hidden;
  if (absl::Status s = tcp_->SendFrame(h, kFrameInDevice, &ref, sizeof(ref)); !s.ok()) return s;
  ++next_;
  return absl::OkStatus();
}

absl::Status IpcTransport::Receiver::Resolve(Frame* f) {
  DeviceRef ref;
  std::memcpy(&ref, f->device_ref.data(), sizeof(ref));
  std::lock_guard<std::mutex> lock(mu);
  cudaSetDevice(device);
  if (!mapped || std::memcmp(handle.data(), &ref.handle, sizeof(ref.handle)) != 0) {
    if (mapped) cudaIpcCloseMemHandle(mapped);  // the sender moved to a larger ring, or restarted
    mapped = nullptr;
    void* p = nullptr;
    if (absl::Status s = Cuda(cudaIpcOpenMemHandle(&p, ref.handle, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle");
        !s.ok())
      return absl::DataLossError(s.message());
    mapped = static_cast<uint8_t*>(p);
    std::memcpy(handle.data(), &ref.handle, sizeof(ref.handle));
  }
  // The header passed the shard's limits (rows, hidden) before this; the rows must fit their slot too. The
  // ring's size is the sender's word: references are trusted as far as the authenticated peer is.
  const size_t bytes = sizeof(float) * static_cast<size_t>(f->header.rows) * static_cast<size_t>(f->header.hidden);
  if (ref.ring_bytes < kAckBytes || (ref.ring_bytes - kAckBytes) / kSlots < bytes)
    return absl::DataLossError(absl::StrCat("CUDA IPC: ", bytes, " bytes of rows do not fit a slot of a ", ref.ring_bytes,
                                            "-byte ring"));
  const size_t offset = kAckBytes + (ref.sequence % kSlots) * ((ref.ring_bytes - kAckBytes) / kSlots);
  f->data.resize(bytes / sizeof(float));
  if (bytes > 0) {
    if (absl::Status s = Cuda(cudaMemcpy(f->data.data(), mapped + offset, bytes, cudaMemcpyDeviceToHost), "copy the rows out");
        !s.ok())
      return absl::DataLossError(s.message());
  }
  return Cuda(cudaMemcpy(mapped, &ref.sequence, sizeof(ref.sequence), cudaMemcpyHostToDevice), "acknowledge");
}

absl::Status IpcTransport::Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                                absl::Time deadline, const std::function<bool()>& cancelled) {
  return tcp_->Recv(round, step, expected_rows, hidden, x, deadline, cancelled);
}

}  // namespace layerskip
