#include "transport/nccl_transport.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

constexpr size_t kMaxQueued = 64;  // frames waiting for the sender thread

// A device buffer that grows (bounded by the caller).
struct DeviceStage {
  void* ptr = nullptr;
  size_t bytes = 0;
  absl::Status Reserve(size_t want) {
    if (want <= bytes) return absl::OkStatus();
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    if (cudaMalloc(&ptr, want) != cudaSuccess) return absl::ResourceExhaustedError(absl::StrCat("cudaMalloc of ", want, " bytes"));
    bytes = want;
    return absl::OkStatus();
  }
  ~DeviceStage() {
    if (ptr) cudaFree(ptr);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(const NcclTransportOptions& options) {
  std::unique_ptr<NcclTransport> t(new NcclTransport(options));
  // Start both initialisations, then wait for both: a middle stage is the sender of one link and the
  // receiver of another, and each link's two ends may start in either order.
  if (!options.next_id.empty()) {
    auto l = NcclLink::Start(options.next_id, 0, 2, options.device);
    if (!l.ok()) return l.status();
    t->out_ = std::move(l).value();
  }
  if (!options.prev_id.empty()) {
    auto l = NcclLink::Start(options.prev_id, 1, 2, options.device);
    if (!l.ok()) return l.status();
    t->in_ = std::move(l).value();
  }
  const absl::Time deadline = absl::Now() + options.init_timeout;
  for (NcclLink* l : {t->out_.get(), t->in_.get()})
    if (l) {
      if (absl::Status s = l->Ready(deadline); !s.ok())
        return absl::UnavailableError(absl::StrCat("NCCL link ", l == t->out_.get() ? "to the next" : "from the previous",
                                                   " stage: ", s.message()));
    }
  if (t->out_) t->sender_ = std::thread([p = t.get()] { p->SendLoop(); });
  if (t->in_) t->receiver_ = std::thread([p = t.get()] { p->RecvLoop(); });
  return t;
}

NcclTransport::~NcclTransport() {
  stop_ = true;
  cv_.notify_all();
  frames_.Close();
  if (sender_.joinable()) sender_.join();  // their waits poll stop_ and abort the link
  if (receiver_.joinable()) receiver_.join();
}

absl::Status NcclTransport::LinkStatus(bool inbound) const {
  std::lock_guard<std::mutex> lock(mu_);
  return inbound ? in_failed_ : out_failed_;
}

absl::Status NcclTransport::Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) {
  if (!out_) return absl::FailedPreconditionError("this stage has no NCCL link to a next stage");
  Frame f;
  f.header.round = round;
  f.header.step = step;
  f.header.rows = rows;
  f.header.hidden = hidden;
  f.data.assign(x, x + static_cast<size_t>(rows) * static_cast<size_t>(hidden));
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_failed_.ok()) return absl::UnavailableError(absl::StrCat("NCCL link to the next stage: ", out_failed_.message()));
  if (queue_.size() >= kMaxQueued) return absl::UnavailableError("NCCL link to the next stage: the next stage is not receiving");
  queue_.push_back(std::move(f));
  cv_.notify_all();
  return absl::OkStatus();
}

void NcclTransport::SendLoop() {
  DeviceStage head, rows;
  for (;;) {
    Frame f;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_.load() || !queue_.empty(); });
      if (stop_) return;
      f = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto header = EncodeFrameHeader(f.header);
    const size_t bytes = f.data.size() * sizeof(float);
    const absl::Time deadline = absl::Now() + options_.transfer_timeout;
    absl::Status s = head.Reserve(header.size());
    if (s.ok()) s = rows.Reserve(bytes);
    if (s.ok()) s = out_->CopyIn(head.ptr, header.data(), header.size(), deadline, &stop_);
    if (s.ok() && bytes > 0) s = out_->CopyIn(rows.ptr, f.data.data(), bytes, deadline, &stop_);
    if (s.ok()) s = out_->Send(head.ptr, header.size(), 1, deadline, &stop_);
    if (s.ok() && bytes > 0) s = out_->Send(rows.ptr, bytes, 1, deadline, &stop_);
    std::lock_guard<std::mutex> lock(mu_);
    if (!s.ok()) {
      out_->Abort(s);
      out_failed_ = s;
      queue_.clear();
      return;
    }
    stats_.bytes_sent += static_cast<int64_t>(header.size() + bytes);
  }
}

void NcclTransport::RecvLoop() {
  DeviceStage head, rows;
  absl::Status s = head.Reserve(kFrameHeaderBytes);
  while (s.ok()) {
    // The next header may come any time (an idle pipeline): no deadline, only stop_.
    s = in_->Recv(head.ptr, kFrameHeaderBytes, 0, absl::InfiniteFuture(), &stop_);
    uint8_t header[kFrameHeaderBytes];
    const absl::Time deadline = absl::Now() + options_.transfer_timeout;
    if (s.ok()) s = in_->CopyOut(header, head.ptr, kFrameHeaderBytes, deadline, &stop_);
    absl::StatusOr<FrameHeader> h = s.ok() ? ParseFrameHeader(header, options_.limits) : absl::StatusOr<FrameHeader>(s);
    if (!h.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (s.ok()) ++stats_.frames_rejected;  // checked before anything is allocated for the rows
      s = h.status();
      break;
    }
    Frame f;
    f.header = *h;
    const size_t bytes = static_cast<size_t>(h->rows) * static_cast<size_t>(h->hidden) * sizeof(float);
    f.data.resize(bytes / sizeof(float));
    if (bytes > 0) {
      s = rows.Reserve(bytes);
      if (s.ok()) s = in_->Recv(rows.ptr, bytes, 0, deadline, &stop_);
      if (s.ok()) s = in_->CopyOut(f.data.data(), rows.ptr, bytes, deadline, &stop_);
    }
    if (!s.ok()) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bytes_received += static_cast<int64_t>(kFrameHeaderBytes + bytes);
    }
    frames_.Put(std::move(f));
  }
  in_->Abort(s);
  std::lock_guard<std::mutex> lock(mu_);
  in_failed_ = s;
}

absl::Status NcclTransport::Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                                 absl::Time deadline, const std::function<bool()>& cancelled) {
  if (!in_) return absl::FailedPreconditionError("this stage has no NCCL link from a previous stage");
  return frames_.Take(round, step, expected_rows, hidden, x, deadline, cancelled, [this]() -> absl::Status {
    const absl::Status s = LinkStatus(true);
    if (s.ok()) return s;
    return absl::UnavailableError(absl::StrCat("NCCL link from the previous stage: ", s.message()));
  });
}

TransportStats NcclTransport::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  TransportStats s = stats_;
  s.frames_dropped = frames_.dropped();
  return s;
}

}  // namespace layerskip
