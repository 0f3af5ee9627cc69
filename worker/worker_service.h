#pragma once
// The Worker gRPC service (proto/layerskip/v1/worker.proto): one shard of layers, its KV cache, the
// activation links to the neighbouring stages, and statistics. Every call is authenticated with the
// cluster token, and so is every data link (transport/link_auth.h). Model calls are serialised by one mutex (the model's thread pool is not re-entrant);
// waiting for activations happens outside it, so stages overlap across micro-batches.
#include <memory>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "engine/runtime/device.h"
#include "layerskip/v1/worker.grpc.pb.h"
#include "transport/tcp_transport.h"
#include "worker/auth.h"
#include "worker/shard.h"

namespace layerskip::worker {

struct WorkerOptions {
  std::string token;              // cluster token; empty: unauthenticated (explicit opt-in only)
  std::string data_host = "127.0.0.1";  // where the TCP activation listener binds
  std::string advertise_host;     // what the worker tells the coordinator (and so its peers); empty: data_host
  int data_port = 0;              // TCP activation listener (0: ephemeral)
  int device = -1;                // CUDA device for the NCCL / IPC transports (-1: CPU only)
  DeviceSpec compute_device;      // where the shard's layers and KV cache live (--device)
  std::string transport = "auto"; // transports Connect may choose: auto (any built in) | tcp | nccl | ipc
  LinkTlsOptions data_tls;        // TLS on the data links (cert_file empty: plain TCP)
  absl::Duration recv_timeout = absl::Seconds(30);
  int64_t kv_positions = 0;         // --kv-cache-positions: the most KV positions a shard may hold (0: no cap)
  double gpu_memory_fraction = 0;   // --gpu-memory-fraction (0: the planner's default); CUDA devices only
};

class WorkerService final : public v1::Worker::Service {
 public:
  // Starts the TCP activation listener.
  static absl::StatusOr<std::unique_ptr<WorkerService>> Create(const WorkerOptions& options);

  grpc::Status LoadShard(grpc::ServerContext* ctx, const v1::LoadShardRequest* req, v1::ShardInfo* resp) override;
  grpc::Status Connect(grpc::ServerContext* ctx, const v1::ConnectRequest* req, v1::ConnectResponse* resp) override;
  grpc::Status GetNcclId(grpc::ServerContext* ctx, const v1::NcclIdRequest* req, v1::NcclIdResponse* resp) override;
  grpc::Status Draft(grpc::ServerContext* ctx, const v1::DraftRequest* req, v1::DraftResponse* resp) override;
  grpc::Status Verify(grpc::ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyResponse* resp) override;
  grpc::Status Accept(grpc::ServerContext* ctx, const v1::AcceptRequest* req, v1::AcceptResponse* resp) override;
  grpc::Status Release(grpc::ServerContext* ctx, const v1::ReleaseRequest* req, v1::ReleaseResponse* resp) override;
  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest* req, v1::HealthResponse* resp) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* req, v1::StatsResponse* resp) override;

  // HOST:PORT of the TCP activation listener, as advertised to the coordinator.
  const std::string& data_endpoint() const { return tcp_->endpoint(); }

 private:
  explicit WorkerService(const WorkerOptions& options);
  // The shard, or FAILED_PRECONDITION when none is loaded.
  absl::StatusOr<Shard*> Loaded();
  // The transport Connect chose; held by the caller for the call (Connect may replace it meanwhile).
  std::shared_ptr<ActivationTransport> transport();

  WorkerOptions options_;
  ClusterAuth auth_;
  std::unique_ptr<TcpTransport> tcp_;
  // Connect's three transports: TCP alone, CUDA IPC over the TCP link, NCCL.
  absl::Status ConnectTcp(const v1::ConnectRequest& req);
  absl::Status ConnectIpc(const v1::ConnectRequest& req);
  absl::Status ConnectNccl(const v1::ConnectRequest& req);

  std::mutex transport_mu_;
  std::shared_ptr<ActivationTransport> device_;  // set by Connect{transport: "nccl" | "ipc"}; null: TCP

  std::mutex compute_mu_;  // the shard and its model: one caller at a time
  std::unique_ptr<Shard> shard_;
  std::string nccl_id_;    // rank 0: the id it handed out

  absl::Time started_ = absl::Now();
  std::mutex stats_mu_;
  v1::StatsResponse stats_;
};

// absl::Status -> grpc::Status, once, at the RPC edge.
grpc::Status ToGrpc(const absl::Status& s);

}  // namespace layerskip::worker
