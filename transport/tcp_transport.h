#pragma once
// ActivationTransport over TCP: each stage listens for its previous stage and dials its next stage.
// Every connection starts with the authenticated handshake (transport/link_auth.h); only the link that
// proves the cluster token and names itself "stage s-1 -> stage s" for this stage s becomes the inbound
// link (a newer such link, from a restarted previous stage, replaces it); anything else is closed and
// counted. With TLS configured, every link is TLS first (the handshake runs inside it). A receiver thread
// per link decodes frames (transport/frame.h) against the shard's limits and
// buffers them keyed by (round, step) for the Recv that waits for them; a bad frame closes that link only.
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "transport/activation_transport.h"
#include "transport/frame.h"
#include "transport/frame_buffer.h"
#include "transport/link_socket.h"

namespace layerskip {

struct TcpTransportOptions {
  std::string listen_host = "127.0.0.1";
  int port = 0;                    // 0: an ephemeral port (see endpoint())
  std::string advertise_host;      // the host in endpoint(); empty: listen_host
  std::string token;               // cluster token (empty: the handshake proves nothing)
  absl::Duration handshake_timeout = absl::Seconds(5);
  absl::Duration send_timeout = absl::Seconds(30);  // a send blocked this long (peer stopped) fails
  std::shared_ptr<LinkTls> tls;    // TLS on every link (both directions); null: plain TCP
};

class TcpTransport : public ActivationTransport {
 public:
  static absl::StatusOr<std::unique_ptr<TcpTransport>> Listen(const TcpTransportOptions& options);
  ~TcpTransport() override;

  // "advertise_host:port", what the previous stage dials.
  const std::string& endpoint() const { return endpoint_; }

  // This stage's index: inbound links are accepted from stage - 1 only, and ConnectNext dials as this stage.
  void SetStage(int stage);
  // The frames this stage accepts (its shard's hidden size and largest batch). A change drops the
  // inbound link and the buffered frames.
  void SetLimits(const FrameLimits& limits);
  // CUDA IPC (transport/ipc_transport.h): frames whose rows stay in the sender's device memory are accepted,
  // and `resolve` (run on the receiver thread) copies each one's rows into its data before it is buffered;
  // an error closes the link like a bad frame. ClearDeviceFrameResolver(owner) turns it off if `owner`
  // still holds it (a newer transport may have replaced it).
  void SetDeviceFrameResolver(std::function<absl::Status(Frame*)> resolve, const void* owner);
  void ClearDeviceFrameResolver(const void* owner);
  // Writes one frame on the outbound link: the header with `flags`, then `bytes` of payload (the rows, or
  // a device reference). Send is SendFrame(h, 0, rows).
  absl::Status SendFrame(const FrameHeader& h, uint32_t flags, const void* payload, size_t bytes);

  // Dials and authenticates the link to the next stage at "host:port", replacing any earlier one. An empty
  // endpoint closes the outbound link (the last stage).
  absl::Status ConnectNext(const std::string& endpoint);

  absl::Status Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) override;
  absl::Status Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                    absl::Time deadline, const std::function<bool()>& cancelled) override;
  TransportStats stats() const override;

  // Drops buffered frames (after an abandoned round, when the cluster is re-wired).
  void ClearBuffered();

 private:
  explicit TcpTransport(const TcpTransportOptions& options) : options_(options) {}
  void AcceptLoop();
  void Serve(int fd, std::string peer);  // one connection's thread: ServeLink, then close
  void ServeLink(int fd, const std::string& peer);  // TLS, handshake, then receive while it is the link
  void Receive(LinkSocket& link, const std::string& peer, const FrameLimits& limits);
  void CloseOutboundLocked();            // send_mu_ held
  absl::Status DialLocked();             // send_mu_ held
  void CloseFdLocked(int fd);            // mu_ held

  const TcpTransportOptions options_;
  std::string endpoint_;
  int listen_fd_ = -1;
  std::thread accept_thread_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  bool stopping_ = false;
  int stage_ = -1;
  FrameLimits limits_;
  int inbound_fd_ = -1;
  std::set<int> open_fds_;  // every accepted connection still open (handshaking or wired)
  int serving_ = 0;         // connection threads alive
  TransportStats stats_;  // frames_dropped comes from frames_
  std::function<absl::Status(Frame*)> resolve_;  // device frames (CUDA IPC); null: refused
  const void* resolve_owner_ = nullptr;

  FrameBuffer frames_;   // received frames by (round, step); its own lock

  std::mutex send_mu_;  // guards the outbound link
  std::string next_endpoint_;
  std::unique_ptr<LinkSocket> outbound_;
};

// Splits "host:port" (IPv6 in brackets); InvalidArgument when malformed.
absl::Status SplitHostPort(const std::string& endpoint, std::string* host, int* port);

}  // namespace layerskip
