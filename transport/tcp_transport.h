#pragma once
// ActivationTransport over TCP: each stage listens for the previous stage's connection and connects to the
// next stage's listener. A reader thread per inbound connection buffers whole frames keyed by
// (round, step); a newer inbound connection (a restarted or re-wired peer) replaces the old one.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "transport/activation_transport.h"

namespace layerskip {

class TcpTransport : public ActivationTransport {
 public:
  // Listens on host:port (port 0: an ephemeral port; see endpoint()).
  static absl::StatusOr<std::unique_ptr<TcpTransport>> Listen(const std::string& host, int port);
  ~TcpTransport() override;

  // "host:port" the previous stage connects to.
  const std::string& endpoint() const { return endpoint_; }

  // Connects the outbound link to the next stage's endpoint ("host:port"), replacing any earlier one.
  // An empty endpoint closes the outbound link (the last stage).
  absl::Status ConnectNext(const std::string& endpoint);

  absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) override;
  absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled) override;
  TransportStats stats() const override;

  // Drops buffered frames (after an abandoned round, when the cluster is re-wired).
  void ClearBuffered();

 private:
  TcpTransport() = default;
  void AcceptLoop();
  void ReadLoop(int fd, uint64_t generation);

  struct Frame {
    FrameHeader header;
    std::vector<float> data;
  };

  std::string endpoint_;
  int listen_fd_ = -1;
  std::thread accept_thread_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool stopping_ = false;
  int inbound_fd_ = -1;
  uint64_t inbound_generation_ = 0;
  std::vector<std::thread> readers_;
  std::map<std::pair<uint64_t, uint32_t>, Frame> frames_;
  TransportStats stats_;

  std::mutex send_mu_;  // guards the outbound link
  int outbound_fd_ = -1;
};

// Splits "host:port"; InvalidArgument when malformed.
absl::Status SplitHostPort(const std::string& endpoint, std::string* host, int* port);

}  // namespace layerskip
