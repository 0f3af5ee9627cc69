#pragma once
// A minimal HTTP/1.1 server on its own thread: GET /metrics (Prometheus text) and GET /health (200 while
// serving, 503 otherwise: the same state as grpc.health.v1). One request per connection.
#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace layerskip::coordinator {

class MetricsHttpServer {
 public:
  MetricsHttpServer(std::function<std::string()> render_metrics, std::function<bool()> serving)
      : render_(std::move(render_metrics)), serving_(std::move(serving)) {}
  ~MetricsHttpServer();
  // Binds host:port (port 0 picks a free one) and starts serving; returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  void Serve();
  void Handle(int fd);

  std::function<std::string()> render_;
  std::function<bool()> serving_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace layerskip::coordinator
