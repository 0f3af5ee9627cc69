// Authenticated TCP data links on loopback (transport/tcp_transport.h, transport/link_auth.h): real
// sockets between two TcpTransports, strangers and wrong tokens, bad frames, ordering, deadlines.
#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <cerrno>
#include <thread>

#include "transport/link_auth.h"
#include "transport/socket_io.h"

namespace layerskip {
namespace {

constexpr int kHidden = 8;
constexpr int kMaxRows = 16;

std::unique_ptr<TcpTransport> Stage(int stage, const std::string& token, std::shared_ptr<LinkTls> tls = nullptr) {
  TcpTransportOptions o;
  o.token = token;
  o.tls = std::move(tls);
  o.handshake_timeout = absl::Seconds(2);
  auto t = TcpTransport::Listen(o);
  EXPECT_TRUE(t.ok()) << t.status();
  (*t)->SetStage(stage);
  (*t)->SetLimits(FrameLimits{kHidden, kMaxRows});
  return std::move(t).value();
}

// A raw TCP connection to endpoint (127.0.0.1:port).
int RawConnect(const std::string& endpoint) {
  std::string host;
  int port = 0;
  EXPECT_TRUE(SplitHostPort(endpoint, &host, &port).ok());
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  SetIoTimeout(fd, absl::Seconds(10));
  return fd;
}

// True when the peer closed fd within the socket's timeout.
bool ClosedByPeer(int fd) {
  char b[64];
  for (;;) {
    const ssize_t n = ::recv(fd, b, sizeof(b), 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;  // reset: closed; timeout: still open
  }
}

std::vector<float> Rows(int rows, float base) {
  std::vector<float> x(static_cast<size_t>(rows) * kHidden);
  for (size_t i = 0; i < x.size(); ++i) x[i] = base + static_cast<float>(i);
  return x;
}

absl::Status RecvRound(TcpTransport& t, uint64_t round, int rows, std::vector<float>* x,
                       absl::Duration wait = absl::Seconds(10)) {
  return t.Recv(round, 0, rows, kHidden, x, absl::Now() + wait, nullptr);
}

// Waits until pred() holds (the receiver threads run asynchronously), at most 10 s.
template <class Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 500 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return pred();
}

TEST(TcpTransportTest, AuthenticatedLinkCarriesFramesByRound) {
  auto s0 = Stage(0, "secret"), s1 = Stage(1, "secret");
  ASSERT_TRUE(s0->ConnectNext(s1->endpoint()).ok());
  // Rounds sent out of order are delivered by key, each to its own waiting receiver.
  std::vector<std::thread> receivers;
  std::vector<absl::Status> got(3);
  std::vector<std::vector<float>> xs(3);
  for (int r = 0; r < 3; ++r)
    receivers.emplace_back([&, r] { got[r] = RecvRound(*s1, 10 + r, r + 1, &xs[r]); });
  for (int r : {2, 0, 1}) ASSERT_TRUE(s0->Send(10 + r, 0, r + 1, kHidden, Rows(r + 1, 100.0f * r).data()).ok());
  for (auto& t : receivers) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(got[r].ok()) << got[r];
    EXPECT_EQ(xs[r], Rows(r + 1, 100.0f * r));
  }
  EXPECT_EQ(s1->stats().links_accepted, 1);
  EXPECT_EQ(s1->stats().links_rejected, 0);
}

TEST(TcpTransportTest, WrongTokenIsRefusedBothWays) {
  auto s0 = Stage(0, "secret"), s1 = Stage(1, "other");
  absl::Status s = s0->ConnectNext(s1->endpoint());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_TRUE(Eventually([&] { return s1->stats().links_rejected == 1; }));
  EXPECT_EQ(s1->stats().links_accepted, 0);
  // An open worker (no token) does not accept a dialer with a token, nor the other way round.
  auto open1 = Stage(1, "");
  EXPECT_FALSE(s0->ConnectNext(open1->endpoint()).ok());
  auto open0 = Stage(0, "");
  EXPECT_TRUE(open0->ConnectNext(open1->endpoint()).ok());  // both open: --allow-unauthenticated
}

TEST(TcpTransportTest, OnlyThePreviousStageMayLink) {
  auto s1 = Stage(1, "secret"), s2 = Stage(2, "secret");
  absl::Status s = s2->ConnectNext(s1->endpoint());  // stage 2 -> 3 dialled at stage 1
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("stage 1"), std::string::npos) << s;
  auto s0 = Stage(0, "secret");
  EXPECT_FALSE(s1->ConnectNext(s0->endpoint()).ok());  // stage 0 takes no inbound link
}

TEST(TcpTransportTest, StrangersNeverReplaceTheLink) {
  auto s0 = Stage(0, "secret"), s1 = Stage(1, "secret");
  ASSERT_TRUE(s0->ConnectNext(s1->endpoint()).ok());
  // An idle stranger, a stranger sending garbage, and one sending an oversized frame header.
  const int idle = RawConnect(s1->endpoint());
  const int garbage = RawConnect(s1->endpoint());
  std::vector<uint8_t> junk(4096, 0x5a);
  WriteFull(garbage, junk.data(), junk.size());
  const int header = RawConnect(s1->endpoint());
  FrameHeader h;
  h.rows = 16384;
  h.hidden = 16384;
  const auto head = EncodeFrameHeader(h);
  WriteFull(header, head.data(), head.size());
  EXPECT_TRUE(ClosedByPeer(garbage));
  EXPECT_TRUE(ClosedByPeer(header));
  // The wired link still carries frames, and only its frames are taken.
  ASSERT_TRUE(s0->Send(5, 0, 2, kHidden, Rows(2, 1.0f).data()).ok());
  std::vector<float> x;
  ASSERT_TRUE(RecvRound(*s1, 5, 2, &x).ok());
  EXPECT_EQ(x, Rows(2, 1.0f));
  EXPECT_TRUE(ClosedByPeer(idle));  // dropped after the handshake timeout
  EXPECT_TRUE(Eventually([&] { return s1->stats().links_rejected == 3; })) << s1->stats().links_rejected;
  EXPECT_EQ(s1->stats().links_accepted, 1);
  ::close(idle);
  ::close(garbage);
  ::close(header);
}

TEST(TcpTransportTest, BadFrameClosesThatLinkOnlyAndIsCounted) {
  auto s0 = Stage(0, "secret"), s1 = Stage(1, "secret");
  ASSERT_TRUE(s0->ConnectNext(s1->endpoint()).ok());
  // A peer that holds the token but sends a header beyond the shard's limits: closed before allocating.
  const int fd = RawConnect(s1->endpoint());
  LinkSocket link(fd);
  ASSERT_TRUE(DialHandshake(link, "secret", 0, 1).ok());
  FrameHeader h;
  h.rows = kMaxRows + 1;
  h.hidden = kHidden;
  const auto head = EncodeFrameHeader(h);
  WriteFull(fd, head.data(), head.size());
  EXPECT_TRUE(ClosedByPeer(fd));
  ::close(fd);
  EXPECT_TRUE(Eventually([&] { return s1->stats().frames_rejected == 1; }));
  // That link had replaced stage 0's; the coordinator re-wires after a data-plane failure.
  ASSERT_TRUE(s0->ConnectNext(s1->endpoint()).ok());
  ASSERT_TRUE(s0->Send(6, 0, 1, kHidden, Rows(1, 0.0f).data()).ok());
  std::vector<float> x;
  EXPECT_TRUE(RecvRound(*s1, 6, 1, &x).ok());
}

TEST(TcpTransportTest, RecvHonoursDeadlineAndCancellation) {
  auto s1 = Stage(1, "secret");
  std::vector<float> x;
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(RecvRound(*s1, 1, 1, &x, absl::Milliseconds(100)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancel = true;
  });
  absl::Status s = s1->Recv(1, 0, 1, kHidden, &x, absl::Now() + absl::Seconds(60), [&] { return cancel.load(); });
  canceller.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
}

TEST(TcpTransportTest, WildcardEndpointIsNeverDialled) {
  auto s0 = Stage(0, "secret");
  absl::Status s = s0->ConnectNext("0.0.0.0:50053");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--advertise-address"), std::string::npos);
}

// A self-signed certificate and key (openssl CLI) in a fresh directory: {cert, key}.
std::pair<std::string, std::string> SelfSigned(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/tls_" + name + "_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=" +
                          name + " -keyout " + dir + "/key.pem -out " + dir + "/cert.pem 2>/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return {dir + "/cert.pem", dir + "/key.pem"};
}

std::shared_ptr<LinkTls> Tls(const std::pair<std::string, std::string>& cert, const std::string& ca = "") {
  auto t = LinkTls::Create(LinkTlsOptions{cert.first, cert.second, ca});
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : nullptr;
}

TEST(TcpTransportTest, TlsLinkCarriesFramesAndRefusesOthers) {
  const auto cluster = SelfSigned("cluster"), other = SelfSigned("other");
  auto s0 = Stage(0, "secret", Tls(cluster)), s1 = Stage(1, "secret", Tls(cluster));
  ASSERT_TRUE(s0->ConnectNext(s1->endpoint()).ok());
  ASSERT_TRUE(s0->Send(3, 0, 2, kHidden, Rows(2, 7.0f).data()).ok());
  std::vector<float> x;
  ASSERT_TRUE(RecvRound(*s1, 3, 2, &x).ok());
  EXPECT_EQ(x, Rows(2, 7.0f));
  // A plain-TCP dialer, and a TLS dialer that trusts other roots, are refused.
  auto plain = Stage(0, "secret");
  EXPECT_FALSE(plain->ConnectNext(s1->endpoint()).ok());
  auto untrusting = Stage(0, "secret", Tls(other));
  absl::Status s = untrusting->ConnectNext(s1->endpoint());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("certificate"), std::string::npos) << s;
  EXPECT_TRUE(Eventually([&] { return s1->stats().links_rejected >= 2; }));
  // A file that is not a certificate is named.
  auto bad = LinkTls::Create(LinkTlsOptions{cluster.second, cluster.second, ""});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace layerskip
