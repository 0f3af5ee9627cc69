#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace layerskip {
namespace {

constexpr size_t kHeaderBytes = 4 + 4 + 8 + 4 + 4 + 4;
constexpr size_t kMaxBufferedFrames = 256;
constexpr int64_t kMaxFrameFloats = int64_t{1} << 31;

void Put(uint8_t*& p, const void* v, size_t n) {
  std::memcpy(p, v, n);
  p += n;
}
void Get(const uint8_t*& p, void* v, size_t n) {
  std::memcpy(v, p, n);
  p += n;
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

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

absl::StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Listen(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return absl::InvalidArgumentError(absl::StrCat("data listener: cannot resolve '", host, "': ", gai_strerror(rc)));
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 8) == 0) break;
    error = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("data listener on ", host, ":", port, ": ", error));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int bound = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                                : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  std::unique_ptr<TcpTransport> t(new TcpTransport());
  t->listen_fd_ = fd;
  const bool v6 = host.find(':') != std::string::npos;
  t->endpoint_ = absl::StrCat(v6 ? "[" : "", host.empty() ? "127.0.0.1" : host, v6 ? "]" : "", ":", bound);
  t->accept_thread_ = std::thread([p = t.get()] { p->AcceptLoop(); });
  return t;
}

TcpTransport::~TcpTransport() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);
  }
  ::shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  ::close(listen_fd_);
  std::vector<std::thread> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    readers.swap(readers_);
  }
  for (std::thread& r : readers) r.join();
  if (outbound_fd_ >= 0) ::close(outbound_fd_);
  cv_.notify_all();
}

void TcpTransport::AcceptLoop() {
  for (;;) {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // listener shut down
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    // A newer link replaces the old one (the previous stage restarted or was re-wired).
    if (inbound_fd_ >= 0) ::shutdown(inbound_fd_, SHUT_RDWR);
    inbound_fd_ = fd;
    const uint64_t generation = ++inbound_generation_;
    readers_.emplace_back([this, fd, generation] { ReadLoop(fd, generation); });
  }
}

void TcpTransport::ReadLoop(int fd, uint64_t generation) {
  for (;;) {
    uint8_t buf[kHeaderBytes];
    if (!ReadAll(fd, buf, sizeof(buf))) break;
    const uint8_t* p = buf;
    uint32_t magic, version;
    Frame f;
    Get(p, &magic, 4);
    Get(p, &version, 4);
    Get(p, &f.header.round, 8);
    Get(p, &f.header.step, 4);
    Get(p, &f.header.rows, 4);
    Get(p, &f.header.hidden, 4);
    const int64_t n = static_cast<int64_t>(f.header.rows) * f.header.hidden;
    if (magic != FrameHeader::kMagic || version != FrameHeader::kVersion || f.header.rows < 0 ||
        f.header.hidden < 0 || n > kMaxFrameFloats)
      break;  // not our protocol: drop the link
    f.data.resize(static_cast<size_t>(n));
    if (n > 0 && !ReadAll(fd, f.data.data(), sizeof(float) * n)) break;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes_received += static_cast<int64_t>(kHeaderBytes + sizeof(float) * n);
    if (frames_.size() >= kMaxBufferedFrames) {  // abandoned rounds: drop the oldest
      frames_.erase(frames_.begin());
      ++stats_.frames_dropped;
    }
    frames_[{f.header.round, f.header.step}] = std::move(f);
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (inbound_generation_ == generation) inbound_fd_ = -1;
  ::close(fd);
}

absl::Status TcpTransport::ConnectNext(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(send_mu_);
  if (outbound_fd_ >= 0) {
    ::close(outbound_fd_);
    outbound_fd_ = -1;
  }
  if (endpoint.empty()) return absl::OkStatus();
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(endpoint, &host, &port); !s.ok()) return s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
    return absl::UnavailableError(absl::StrCat("next stage ", endpoint, ": ", gai_strerror(rc)));
  std::string error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      outbound_fd_ = fd;
      break;
    }
    error = std::strerror(errno);
    ::close(fd);
  }
  freeaddrinfo(res);
  if (outbound_fd_ < 0) return absl::UnavailableError(absl::StrCat("cannot connect to the next stage at ", endpoint, ": ", error));
  return absl::OkStatus();
}

absl::Status TcpTransport::Send(uint64_t round, uint32_t step, int rows, int hidden, const float* x) {
  uint8_t buf[kHeaderBytes];
  uint8_t* p = buf;
  const uint32_t magic = FrameHeader::kMagic, version = FrameHeader::kVersion;
  const int32_t r = rows, h = hidden;
  Put(p, &magic, 4);
  Put(p, &version, 4);
  Put(p, &round, 8);
  Put(p, &step, 4);
  Put(p, &r, 4);
  Put(p, &h, 4);
  const size_t bytes = sizeof(float) * static_cast<size_t>(rows) * hidden;
  std::lock_guard<std::mutex> lock(send_mu_);
  if (outbound_fd_ < 0) return absl::UnavailableError("no link to the next stage (Connect was not called)");
  if (!WriteAll(outbound_fd_, buf, sizeof(buf)) || (bytes > 0 && !WriteAll(outbound_fd_, x, bytes))) {
    ::close(outbound_fd_);
    outbound_fd_ = -1;
    return absl::UnavailableError("the link to the next stage broke while sending activations");
  }
  std::lock_guard<std::mutex> stats_lock(mu_);
  stats_.bytes_sent += static_cast<int64_t>(sizeof(buf) + bytes);
  return absl::OkStatus();
}

absl::Status TcpTransport::Recv(uint64_t round, uint32_t step, int expected_rows, int hidden, std::vector<float>* x,
                                absl::Time deadline, const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto key = std::make_pair(round, step);
  for (;;) {
    auto it = frames_.find(key);
    if (it != frames_.end()) {
      Frame f = std::move(it->second);
      frames_.erase(it);
      lock.unlock();
      if (f.header.hidden != hidden || (expected_rows >= 0 && f.header.rows != expected_rows))
        return absl::InvalidArgumentError(absl::StrCat("round ", round, ": received [", f.header.rows, ", ",
                                                       f.header.hidden, "] activations, expected [", expected_rows,
                                                       ", ", hidden, "]"));
      *x = std::move(f.data);
      return absl::OkStatus();
    }
    if (stopping_) return absl::CancelledError("transport shutting down");
    if (cancelled && cancelled()) return absl::CancelledError(absl::StrCat("round ", round, " cancelled while waiting for activations"));
    const absl::Time now = absl::Now();
    if (now >= deadline)
      return absl::DeadlineExceededError(absl::StrCat("round ", round, ": no activations from the previous stage"));
    cv_.wait_for(lock, absl::ToChronoNanoseconds(std::min(deadline - now, absl::Milliseconds(20))));
  }
}

TransportStats TcpTransport::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void TcpTransport::ClearBuffered() {
  std::lock_guard<std::mutex> lock(mu_);
  frames_.clear();
}

}  // namespace layerskip
