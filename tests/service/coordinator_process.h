#pragma once
// Test support: a real layerskip-coordinator process on a free loopback port (--listen 127.0.0.1:0; the
// chosen ports are read from its stdout), gRPC stubs for it, and a tiny HTTP GET for /metrics and /health.
#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "layerskip/v1/inference.grpc.pb.h"

namespace layerskip::testing {

class CoordinatorProcess {
 public:
  // Starts build/bin/layerskip-coordinator with `args` (after --listen 127.0.0.1:0 unless `args` has a
  // --listen, and --metrics-port 0) and waits (up to 60 s)
  // until it prints "serving". ok() is false when it did not come up.
  // `binary`: another coordinator binary in build/bin (layerskip-coordinator-failing).
  explicit CoordinatorProcess(const std::vector<std::string>& args,
                              const std::string& binary = "layerskip-coordinator");
  ~CoordinatorProcess();  // SIGKILL if still running

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }  // -1 without --http-port
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  std::string stderr_text() const;

  std::unique_ptr<v1::Inference::Stub> Stub() const;
  std::unique_ptr<grpc::health::v1::Health::Stub> HealthStub() const;
  // grpc.health.v1 status for `service` ("" = the server); -1 when the call fails.
  int HealthStatus(const std::string& service = "") const;

  void Signal(int sig) const { ::kill(pid_, sig); }
  // Waits up to `seconds` for the process to exit; its exit code, 128 + signal, or -1 on timeout.
  int Wait(double seconds);

  // GET path on the metrics port (or `port`): {status code, body}; code 0 when the connection fails.
  std::pair<int, std::string> HttpGet(const std::string& path, int port = -1) const;
  // The value of the series `name{labels}` exactly as rendered, or -1.
  double Metric(const std::string& prefix) const;

 private:
  pid_t pid_ = -1;
  int port_ = 0, metrics_port_ = -1, http_port_ = -1;
  std::string stderr_path_;
  bool exited_ = false;
};

// `layerskip generate --model MODEL --json --threads 1 ARGS` (ARGS go through the shell): the reference the
// service's output must match. Empty on failure (after a gtest failure naming the command).
std::string CliGenerateJson(const std::string& model, const std::string& args);

// One HTTP/1.1 exchange on 127.0.0.1:port (Connection: close): {status, body}; status 0 when the
// connection fails. `extra_headers` are complete "Name: value\r\n" lines.
std::pair<int, std::string> HttpRequest(int port, const std::string& method, const std::string& path,
                                        const std::string& body = "", const std::string& extra_headers = "");
// A connected loopback TCP socket, or -1.
int ConnectLoopback(int port);

// Polls `pred` every 10 ms for up to `seconds`.
bool WaitFor(const std::function<bool()>& pred, double seconds);

}  // namespace layerskip::testing
