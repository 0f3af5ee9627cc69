#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "transport/link_auth.h"
#include "transport/socket_io.h"

namespace layerskip {
namespace {

constexpr int kMaxConnections = 16;  // open connections (handshaking or wired); more are closed at once

std::string PeerName(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* in = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
    port = ntohs(in->sin6_port);
  }
  return absl::StrCat(host, ":", port);
}

// The listener never writes on a wired link, so anything readable on the outbound socket means the peer
// closed or reset it.
bool PeerHungUp(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void Log(const std::string& line) { std::fprintf(stderr, "layerskip-worker: data port: %s\n", line.c_str()); }

}  // namespace

absl::Status SplitHostPort(const std::string& endpoint, std::string* host, int* port) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size())
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "' is not HOST:PORT"));
  *host = endpoint.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  char* end = nullptr;
  const long p = std::strtol(endpoint.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535)
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "' has a bad port"));
  *port = static_cast<int>(p);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Listen(const TcpTransportOptions& options) {
  const std::string& host = options.listen_host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(options.port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return absl::InvalidArgumentError(absl::StrCat("data listener: cannot resolve '", host, "': ", gai_strerror(rc)));
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 16) == 0) break;
    error = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("data listener on ", host, ":", options.port, ": ", error));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int bound = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                                : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  std::unique_ptr<TcpTransport> t(new TcpTransport(options));
  t->listen_fd_ = fd;
  std::string shown = options.advertise_host.empty() ? host : options.advertise_host;
  if (shown.empty()) shown = "127.0.0.1";
  const bool v6 = shown.find(':') != std::string::npos;
  t->endpoint_ = absl::StrCat(v6 ? "[" : "", shown, v6 ? "]" : "", ":", bound);
  t->accept_thread_ = std::thread([p = t.get()] { p->AcceptLoop(); });
  return t;
}

TcpTransport::~TcpTransport() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  ::shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  ::close(listen_fd_);
  frames_.Close();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return serving_ == 0; });
  }
  std::lock_guard<std::mutex> lock(send_mu_);
  CloseOutboundLocked();
}

void TcpTransport::CloseOutboundLocked() {
  if (!outbound_) return;
  const int fd = outbound_->fd();
  outbound_.reset();
  ::close(fd);
}

void TcpTransport::SetStage(int stage) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stage == stage_) return;
  stage_ = stage;
  if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);  // it was wired for another stage
}

void TcpTransport::SetLimits(const FrameLimits& limits) {
  std::lock_guard<std::mutex> lock(mu_);
  if (limits.hidden == limits_.hidden && limits.max_rows == limits_.max_rows) return;
  limits_.hidden = limits.hidden;
  limits_.max_rows = limits.max_rows;
  frames_.Clear();
  if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);
}

void TcpTransport::ClearDeviceFrameResolver(const void* owner) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (owner != resolve_owner_) return;
  }
  SetDeviceFrameResolver(nullptr, nullptr);
}

void TcpTransport::SetDeviceFrameResolver(std::function<absl::Status(Frame*)> resolve, const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool on = resolve != nullptr;
  resolve_ = std::move(resolve);
  resolve_owner_ = owner;
  if (on == limits_.device_frames) return;
  limits_.device_frames = on;
  if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);  // its decoder has the old limits
}

void TcpTransport::AcceptLoop() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = ::accept(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      return;  // listener shut down
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    if (static_cast<int>(open_fds_.size()) >= kMaxConnections) {
      ++stats_.links_rejected;
      ::close(fd);
      continue;
    }
    open_fds_.insert(fd);
    ++serving_;
    std::thread([this, fd, peer = PeerName(addr)] { Serve(fd, peer); }).detach();
  }
}

void TcpTransport::CloseFdLocked(int fd) {
  open_fds_.erase(fd);
  if (inbound_fd_ == fd) inbound_fd_ = -1;
  ::close(fd);
}

void TcpTransport::Serve(int fd, std::string peer) {
  ServeLink(fd, peer);
  std::lock_guard<std::mutex> lock(mu_);
  CloseFdLocked(fd);
  --serving_;
  cv_.notify_all();
}

void TcpTransport::ServeLink(int fd, const std::string& peer) {
  TuneDataSocket(fd);
  SetIoTimeout(fd, options_.handshake_timeout);  // a silent stranger is dropped after this
  LinkSocket link(fd);
  absl::StatusOr<LinkHello> hello = absl::UnauthenticatedError("no TLS");
  if (absl::Status tls = options_.tls ? link.StartTls(options_.tls->server(), true) : absl::OkStatus(); !tls.ok())
    hello = tls;
  else
    hello = AcceptHandshake(link, options_.token);
  absl::Status verdict = hello.status();
  FrameLimits limits;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (verdict.ok() && !stopping_) {
      if (stage_ < 1)
        verdict = absl::FailedPreconditionError(absl::StrCat("stage ", stage_, " takes no inbound data link"));
      else if (hello->to_stage != stage_ || hello->from_stage != stage_ - 1)
        verdict = absl::FailedPreconditionError(absl::StrCat("this is stage ", stage_, "; it takes its link from stage ",
                                                             stage_ - 1, ", not ", hello->from_stage, " -> ", hello->to_stage));
    }
    if (stopping_) verdict = absl::CancelledError("shutting down");
    if (verdict.ok()) {
      // The one wired link: a newer authenticated link from the previous stage (restarted) replaces it.
      if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);
      inbound_fd_ = fd;
      limits = limits_;
      ++stats_.links_accepted;
    } else {
      ++stats_.links_rejected;
    }
  }
  if (!hello.ok() || !verdict.ok()) {
    if (hello.ok()) SendVerdict(link, verdict);
    Log(absl::StrCat("refused a connection from ", peer, ": ", verdict.message()));
  } else if (SendVerdict(link, absl::OkStatus())) {
    SetIoTimeout(fd, absl::ZeroDuration());  // an idle link is fine; keepalive notices a dead peer
    Receive(link, peer, limits);
  }
}

void TcpTransport::Receive(LinkSocket& link, const std::string& peer, const FrameLimits& limits) {
  FrameDecoder decoder(limits);
  std::vector<uint8_t> buf(1 << 16);
  std::vector<Frame> frames;
  for (;;) {
    const long n = link.ReadSome(buf.data(), buf.size());
    if (n <= 0) return;  // closed, replaced, or shut down
    frames.clear();
    absl::Status s = decoder.Feed(buf.data(), static_cast<size_t>(n), &frames);
    for (Frame& f : frames) {
      if (f.in_device) {  // CUDA IPC: copy the rows out of the sender's device memory first
        std::function<absl::Status(Frame*)> resolve;
        {
          std::lock_guard<std::mutex> lock(mu_);
          resolve = resolve_;
        }
        absl::Status r = resolve ? resolve(&f) : absl::DataLossError("frame: device reference, no CUDA IPC here");
        if (!r.ok()) {
          s = r;
          break;
        }
      }
      frames_.Put(std::move(f));
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_received += n;
    if (!s.ok()) {
      ++stats_.frames_rejected;
      Log(absl::StrCat("closing the link from ", peer, ": ", s.message()));
      return;
    }
  }
}

absl::Status TcpTransport::ConnectNext(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(send_mu_);
  CloseOutboundLocked();
  next_endpoint_ = endpoint;
  if (endpoint.empty()) return absl::OkStatus();
  // A listener that has not learnt its stage yet refuses with FAILED_PRECONDITION: retry briefly.
  absl::Status s;
  for (int attempt = 0; attempt < 20; ++attempt) {
    s = DialLocked();
    if (s.ok() || !absl::IsFailedPrecondition(s)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return s;
}

absl::Status TcpTransport::DialLocked() {
  int stage;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stage = stage_;
  }
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(next_endpoint_, &host, &port); !s.ok()) return s;
  if (host == "0.0.0.0" || host == "::")
    return absl::InvalidArgumentError(absl::StrCat("the next stage advertises ", next_endpoint_,
                                                   ", a wildcard address; start it with --advertise-address"));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return absl::UnavailableError(absl::StrCat("next stage ", next_endpoint_, ": ", gai_strerror(rc)));
  absl::Status status = absl::UnavailableError(absl::StrCat("cannot connect to the next stage at ", next_endpoint_, ": no address"));
  for (addrinfo* a = res; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    SetIoTimeout(fd, options_.handshake_timeout);  // bounds connect() and the handshake
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      status = absl::UnavailableError(absl::StrCat("cannot connect to the next stage at ", next_endpoint_, ": ", std::strerror(errno)));
      ::close(fd);
      continue;
    }
    TuneDataSocket(fd);
    auto link = std::make_unique<LinkSocket>(fd);
    status = options_.tls ? link->StartTls(options_.tls->client(), false) : absl::OkStatus();
    if (status.ok()) status = DialHandshake(*link, options_.token, stage, stage + 1);
    if (!status.ok()) {
      status = absl::Status(status.code(), absl::StrCat("data link to ", next_endpoint_, ": ", status.message()));
      link.reset();
      ::close(fd);
      break;
    }
    SetIoTimeout(fd, options_.send_timeout);
    outbound_ = std::move(link);
    break;
  }
  freeaddrinfo(res);
  return status;
}

absl::Status TcpTransport::Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) {
  FrameHeader h;
  h.round = round;
  h.step = step;
  h.rows = rows;
  h.hidden = hidden;
  return SendFrame(h, 0, x, sizeof(float) * static_cast<size_t>(rows) * static_cast<size_t>(hidden));
}

absl::Status TcpTransport::SendFrame(const FrameHeader& h, uint32_t flags, const void* x, size_t bytes) {
  const std::array<uint8_t, kFrameHeaderBytes> head = EncodeFrameHeader(h, flags);
  std::lock_guard<std::mutex> lock(send_mu_);
  if (outbound_ && PeerHungUp(outbound_->fd())) CloseOutboundLocked();  // replaced or restarted peer: re-dial
  if (!outbound_) {
    if (next_endpoint_.empty()) return absl::UnavailableError("no link to the next stage (Connect was not called)");
    if (absl::Status s = DialLocked(); !s.ok())  // the link broke earlier: one fresh attempt
      return absl::UnavailableError(absl::StrCat("no link to the next stage: ", s.message()));
  }
  if (!outbound_->WriteFull(head.data(), head.size()) || (bytes > 0 && !outbound_->WriteFull(x, bytes))) {
    CloseOutboundLocked();
    return absl::UnavailableError("the link to the next stage broke (or stalled) while sending activations");
  }
  std::lock_guard<std::mutex> stats_lock(mu_);
  stats_.bytes_sent += static_cast<int64_t>(head.size() + bytes);
  return absl::OkStatus();
}

absl::Status TcpTransport::Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                                absl::Time deadline, const std::function<bool()>& cancelled) {
  return frames_.Take(round, step, expected_rows, hidden, x, deadline, cancelled);
}

TransportStats TcpTransport::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  TransportStats s = stats_;
  s.frames_dropped = frames_.dropped();
  return s;
}

void TcpTransport::ClearBuffered() { frames_.Clear(); }

}  // namespace layerskip
