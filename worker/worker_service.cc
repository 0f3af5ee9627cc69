#include "worker/worker_service.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"
#ifdef LAYERSKIP_HAVE_NCCL
#include "transport/nccl_link.h"
#include "transport/nccl_transport.h"
#endif
#ifdef LAYERSKIP_HAVE_CUDA_IPC
#include "transport/ipc_transport.h"
#endif

namespace layerskip::worker {
namespace {

double Seconds(absl::Time since) { return absl::ToDoubleSeconds(absl::Now() - since); }

#define LS_CHECK_AUTH(ctx)                               \
  do {                                                   \
    grpc::Status auth_status_ = auth_.Check(*(ctx));     \
    if (!auth_status_.ok()) return auth_status_;         \
  } while (0)

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

WorkerService::WorkerService(const WorkerOptions& options) : options_(options), auth_(options.token) {}

absl::StatusOr<std::unique_ptr<WorkerService>> WorkerService::Create(const WorkerOptions& options) {
  std::unique_ptr<WorkerService> w(new WorkerService(options));
  TcpTransportOptions t;
  t.listen_host = options.data_host;
  t.port = options.data_port;
  t.advertise_host = options.advertise_host;
  t.token = options.token;
  t.send_timeout = options.recv_timeout;
  if (!options.data_tls.cert_file.empty()) {
    LS_ASSIGN_OR_RETURN(t.tls, LinkTls::Create(options.data_tls));
  }
  LS_ASSIGN_OR_RETURN(w->tcp_, TcpTransport::Listen(t));
  return w;
}

absl::StatusOr<Shard*> WorkerService::Loaded() {
  if (!shard_) return absl::FailedPreconditionError("worker has no shard loaded (LoadShard first)");
  return shard_.get();
}

std::shared_ptr<ActivationTransport> WorkerService::transport() {
  std::lock_guard<std::mutex> lock(transport_mu_);
  if (device_) return device_;
  return std::shared_ptr<ActivationTransport>(std::shared_ptr<void>(), tcp_.get());  // tcp_ lives as long as this
}

grpc::Status WorkerService::LoadShard(grpc::ServerContext* ctx, const v1::LoadShardRequest* req, v1::ShardInfo* resp) {
  LS_CHECK_AUTH(ctx);
  const ShardSpec spec = ShardSpec::FromRequest(*req);
  std::lock_guard<std::mutex> lock(compute_mu_);
  tcp_->SetStage(req->stage());
  if (shard_) {
    if (shard_->spec().SameShard(spec)) {
      shard_->FillInfo(resp);
      resp->set_already_loaded(true);
      resp->set_data_endpoint(tcp_->endpoint());
      return grpc::Status::OK;
    }
    if (!req->replace())
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("worker already holds ", shard_->spec().ToString(), "; refusing ", spec.ToString()));
    shard_.reset();
  }
  if (options_.kv_positions > 0 && int64_t{spec.num_slots} * spec.context > options_.kv_positions)
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("this worker holds at most ", options_.kv_positions,
                                     " KV-cache positions (--kv-cache-positions); the shard asks for ", spec.num_slots,
                                     " slots x ", spec.context, " positions: lower the coordinator's --num-slots or "
                                     "--max-context"));
  auto loaded = Shard::Load(spec, options_.compute_device, options_.gpu_memory_fraction);
  if (!loaded.ok()) return ToGrpc(loaded.status());
  shard_ = std::move(loaded).value();
  // Frames larger than every slot's whole context, or of another width, are refused before allocation.
  tcp_->SetLimits(FrameLimits{shard_->hidden(), spec.num_slots * std::max(spec.context, 1)});
  tcp_->ClearBuffered();
  shard_->FillInfo(resp);
  resp->set_data_endpoint(tcp_->endpoint());
  return grpc::Status::OK;
}

grpc::Status WorkerService::Connect(grpc::ServerContext* ctx, const v1::ConnectRequest* req, v1::ConnectResponse*) {
  LS_CHECK_AUTH(ctx);
  const std::string kind = req->transport().empty() ? "tcp" : req->transport();
  if (kind != "tcp" && kind != "nccl" && kind != "ipc")
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("unknown transport '", kind, "'"));
  if (options_.transport != "auto" && options_.transport != kind)
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, absl::StrCat("the coordinator asks for the ", kind,
                        " transport; this worker was started with --transport ", options_.transport));
  tcp_->SetStage(req->stage());
  {
    // The old device transport goes first (NCCL: its communicators are aborted before new ones start),
    // once the calls that still hold it are done.
    std::lock_guard<std::mutex> lock(transport_mu_);
    device_.reset();
  }
  absl::Status s = kind == "tcp" ? ConnectTcp(*req) : kind == "ipc" ? ConnectIpc(*req) : ConnectNccl(*req);
  if (!s.ok())
    return ToGrpc(absl::Status(s.code(), absl::StrCat("data plane (", kind, "), stage ", req->stage(), ": ", s.message())));
  return grpc::Status::OK;
}

absl::Status WorkerService::ConnectTcp(const v1::ConnectRequest& req) {
  tcp_->ClearBuffered();
  return tcp_->ConnectNext(req.next_endpoint());
}

absl::Status WorkerService::ConnectIpc(const v1::ConnectRequest& req) {
#ifdef LAYERSKIP_HAVE_CUDA_IPC
  const int device = req.device() >= 0 ? req.device() : options_.device;
  if (device < 0) return absl::FailedPreconditionError("the ipc transport needs a GPU: start the worker with --device cuda:N");
  LS_ASSIGN_OR_RETURN(std::unique_ptr<IpcTransport> t, IpcTransport::Create(tcp_.get(), device, options_.recv_timeout));
  tcp_->ClearBuffered();
  LS_RETURN_IF_ERROR(tcp_->ConnectNext(req.next_endpoint()));  // the frames' headers and references
  std::lock_guard<std::mutex> lock(transport_mu_);
  device_ = std::move(t);
  return absl::OkStatus();
#else
  (void)req;
  return absl::UnimplementedError("this worker was built without CUDA (no CUDA IPC)");
#endif
}

absl::Status WorkerService::ConnectNccl(const v1::ConnectRequest& req) {
#ifdef LAYERSKIP_HAVE_NCCL
  NcclTransportOptions o;
  o.device = req.device() >= 0 ? req.device() : std::max(0, options_.device);
  o.next_id = req.nccl_unique_id();
  o.prev_id = req.nccl_prev_id();
  o.transfer_timeout = options_.recv_timeout;
  {
    std::lock_guard<std::mutex> lock(compute_mu_);
    if (!shard_) return absl::FailedPreconditionError("Connect before LoadShard");
    o.limits = FrameLimits{shard_->hidden(), shard_->spec().num_slots * std::max(shard_->spec().context, 1)};
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<NcclTransport> t, NcclTransport::Create(o));
  std::lock_guard<std::mutex> lock(transport_mu_);
  device_ = std::move(t);
  return absl::OkStatus();
#else
  (void)req;
  return absl::UnimplementedError("this worker was built without NCCL (no CUDA found at build time)");
#endif
}

grpc::Status WorkerService::GetNcclId(grpc::ServerContext* ctx, const v1::NcclIdRequest*, v1::NcclIdResponse* resp) {
  LS_CHECK_AUTH(ctx);
#ifdef LAYERSKIP_HAVE_NCCL
  auto id = NewNcclUniqueId();  // the link from this stage to the next
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_nccl_unique_id(*id);
  return grpc::Status::OK;
#else
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this worker was built without NCCL (no CUDA found at build time)");
#endif
}

grpc::Status WorkerService::Draft(grpc::ServerContext* ctx, const v1::DraftRequest* req, v1::DraftResponse* resp) {
  LS_CHECK_AUTH(ctx);
  std::vector<float> rows;
  int hidden = 0;
  const absl::Time t0 = absl::Now();
  {
    std::lock_guard<std::mutex> lock(compute_mu_);
    auto shard = Loaded();
    if (!shard.ok()) return ToGrpc(shard.status());
    hidden = (*shard)->hidden();
    absl::Status s = req->early_exit_layer() > 0 ? (*shard)->EarlyExit(*req, resp) : (*shard)->Draft(*req, resp, &rows);
    if (!s.ok()) return ToGrpc(s);
  }
  const double busy = Seconds(t0);
  if (req->early_exit_layer() == 0) {
    const int n = static_cast<int>(rows.size() / std::max(hidden, 1));
    absl::Status s = transport()->Send(req->round(), 0, n, hidden, rows.data());  // queued or written, never waits for a peer RPC
    if (!s.ok()) return ToGrpc(absl::UnavailableError(absl::StrCat("data plane: sending round ", req->round(), " on: ", s.message())));
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.set_busy_seconds(stats_.busy_seconds() + busy);
  stats_.set_draft_seconds(stats_.draft_seconds() + busy);
  stats_.set_rounds(stats_.rounds() + 1);
  stats_.set_rows(stats_.rows() + static_cast<int64_t>(rows.size() / std::max(hidden, 1)));
  return grpc::Status::OK;
}

grpc::Status WorkerService::Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) {
  LS_CHECK_AUTH(ctx);
  int hidden = 0;
  bool last = false;
  {
    std::lock_guard<std::mutex> lock(compute_mu_);
    auto shard = Loaded();
    if (!shard.ok()) return ToGrpc(shard.status());
    hidden = (*shard)->hidden();
    last = (*shard)->is_last();
  }
  int64_t total_rows = 0;
  for (const v1::VerifySequence& s : req->seqs()) {
    if (s.rows() < 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Verify: negative rows");
    total_rows += s.rows();
  }
  if (total_rows > (int64_t{1} << 24))
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("Verify: ", total_rows, " rows in one round"));
  const int rows = static_cast<int>(total_rows);
  // Wait for the round's activations outside the model lock: other micro-batches may compute meanwhile.
  const absl::Time t0 = absl::Now();
  std::vector<float> x;
  absl::Status s = transport()->Recv(req->round(), 0, rows, hidden, &x, absl::Now() + options_.recv_timeout,
                                     [ctx] { return ctx->IsCancelled(); });
  if (!s.ok()) {  // the data plane failed this round (CANCELLED: the coordinator gave the round up)
    if (!absl::IsCancelled(s)) s = absl::UnavailableError(absl::StrCat("data plane: ", s.message()));
    return ToGrpc(s);
  }
  const absl::Time t1 = absl::Now();
  {
    std::lock_guard<std::mutex> lock(compute_mu_);
    auto shard = Loaded();
    if (!shard.ok()) return ToGrpc(shard.status());
    s = (*shard)->Verify(*req, x, resp);
    if (!s.ok()) return ToGrpc(s);
  }
  const double busy = Seconds(t1);
  if (!last) {
    s = transport()->Send(req->round(), 0, rows, hidden, x.data());
    if (!s.ok()) return ToGrpc(absl::UnavailableError(absl::StrCat("data plane: sending round ", req->round(), " on: ", s.message())));
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.set_busy_seconds(stats_.busy_seconds() + busy);
  stats_.set_verify_seconds(stats_.verify_seconds() + busy);
  stats_.set_transport_wait_seconds(stats_.transport_wait_seconds() + absl::ToDoubleSeconds(t1 - t0));
  stats_.set_rounds(stats_.rounds() + 1);
  stats_.set_rows(stats_.rows() + rows);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Accept(grpc::ServerContext* ctx, const v1::AcceptRequest* req, v1::AcceptResponse*) {
  LS_CHECK_AUTH(ctx);
  if (req->slots_size() != req->lengths_size())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Accept: one length per slot");
  std::lock_guard<std::mutex> lock(compute_mu_);
  auto shard = Loaded();
  if (!shard.ok()) return ToGrpc(shard.status());
  for (int i = 0; i < req->slots_size(); ++i) {
    absl::Status s = (*shard)->Truncate(req->slots(i), req->lengths(i));
    if (!s.ok()) return ToGrpc(s);
  }
  return grpc::Status::OK;
}

grpc::Status WorkerService::Release(grpc::ServerContext* ctx, const v1::ReleaseRequest* req, v1::ReleaseResponse*) {
  LS_CHECK_AUTH(ctx);
  std::lock_guard<std::mutex> lock(compute_mu_);
  auto shard = Loaded();
  if (!shard.ok()) return ToGrpc(shard.status());
  for (int slot : req->slots()) (*shard)->Reset(slot);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Health(grpc::ServerContext* ctx, const v1::HealthRequest*, v1::HealthResponse* resp) {
  LS_CHECK_AUTH(ctx);
  resp->set_pid(static_cast<int64_t>(::getpid()));
  std::unique_lock<std::mutex> lock(compute_mu_, std::try_to_lock);
  if (!lock.owns_lock()) {  // computing: the shard is loaded (it is only replaced under this lock)
    resp->set_loaded(true);
    return grpc::Status::OK;
  }
  resp->set_loaded(shard_ != nullptr);
  if (shard_) {
    shard_->FillInfo(resp->mutable_shard());
    resp->mutable_shard()->set_data_endpoint(tcp_->endpoint());
  }
  return grpc::Status::OK;
}

grpc::Status WorkerService::Stats(grpc::ServerContext* ctx, const v1::StatsRequest*, v1::StatsResponse* resp) {
  LS_CHECK_AUTH(ctx);
  const TransportStats t = transport()->stats();
  const TransportStats port = tcp_->stats();  // the data port is TCP whatever carries the activations
  std::lock_guard<std::mutex> lock(stats_mu_);
  *resp = stats_;
  resp->set_uptime_seconds(Seconds(started_));
  resp->set_bytes_sent(t.bytes_sent);
  resp->set_bytes_received(t.bytes_received);
  resp->set_data_links_accepted(port.links_accepted);
  resp->set_data_links_rejected(port.links_rejected);
  resp->set_data_frames_rejected(port.frames_rejected);
  resp->set_data_frames_dropped(t.frames_dropped);
  return grpc::Status::OK;
}

}  // namespace layerskip::worker
