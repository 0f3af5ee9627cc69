#include "worker/worker_service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "engine/util/status.h"
#ifdef LAYERSKIP_HAVE_NCCL
#include "transport/nccl_transport.h"
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
  LS_ASSIGN_OR_RETURN(w->tcp_, TcpTransport::Listen(options.data_host, options.data_port));
  return w;
}

absl::StatusOr<Shard*> WorkerService::Loaded() {
  if (!shard_) return absl::FailedPreconditionError("worker has no shard loaded (LoadShard first)");
  return shard_.get();
}

ActivationTransport* WorkerService::transport() {
  if (use_nccl_.load() && nccl_) return nccl_.get();
  return tcp_.get();
}

grpc::Status WorkerService::LoadShard(grpc::ServerContext* ctx, const v1::LoadShardRequest* req, v1::ShardInfo* resp) {
  LS_CHECK_AUTH(ctx);
  const ShardSpec spec = ShardSpec::FromRequest(*req);
  std::lock_guard<std::mutex> lock(compute_mu_);
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
  auto loaded = Shard::Load(spec);
  if (!loaded.ok()) return ToGrpc(loaded.status());
  shard_ = std::move(loaded).value();
  tcp_->ClearBuffered();
  shard_->FillInfo(resp);
  resp->set_data_endpoint(tcp_->endpoint());
  return grpc::Status::OK;
}

grpc::Status WorkerService::Connect(grpc::ServerContext* ctx, const v1::ConnectRequest* req, v1::ConnectResponse*) {
  LS_CHECK_AUTH(ctx);
  if (req->transport().empty() || req->transport() == "tcp") {
    use_nccl_ = false;
    tcp_->ClearBuffered();
    return ToGrpc(tcp_->ConnectNext(req->next_endpoint()));
  }
  if (req->transport() != "nccl")
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("unknown transport '", req->transport(), "'"));
#ifdef LAYERSKIP_HAVE_NCCL
  const int device = req->device() >= 0 ? req->device() : std::max(0, options_.device);
  auto t = NcclTransport::Create(req->nccl_unique_id(), req->rank(), req->num_ranks(), device);
  if (!t.ok()) return ToGrpc(t.status());
  nccl_ = std::move(t).value();
  use_nccl_ = true;
  return grpc::Status::OK;
#else
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this worker was built without NCCL (no CUDA found at build time)");
#endif
}

grpc::Status WorkerService::GetNcclId(grpc::ServerContext* ctx, const v1::NcclIdRequest*, v1::NcclIdResponse* resp) {
  LS_CHECK_AUTH(ctx);
#ifdef LAYERSKIP_HAVE_NCCL
  auto id = NewNcclUniqueId();
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
    absl::Status s = transport()->Send(req->round(), 0, n, hidden, rows.data());
    if (!s.ok()) return ToGrpc(absl::UnavailableError(absl::StrCat("sending round ", req->round(), " on: ", s.message())));
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
  if (!s.ok()) {
    if (absl::IsDeadlineExceeded(s)) s = absl::UnavailableError(s.message());  // the previous stage is gone
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
    if (!s.ok()) return ToGrpc(absl::UnavailableError(absl::StrCat("sending round ", req->round(), " on: ", s.message())));
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
  std::lock_guard<std::mutex> lock(stats_mu_);
  *resp = stats_;
  resp->set_uptime_seconds(Seconds(started_));
  resp->set_bytes_sent(t.bytes_sent);
  resp->set_bytes_received(t.bytes_received);
  return grpc::Status::OK;
}

}  // namespace layerskip::worker
