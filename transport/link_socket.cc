#include "transport/link_socket.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <cerrno>
#include <csignal>

#include "absl/strings/str_cat.h"
#include "transport/socket_io.h"

namespace layerskip {
namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "no OpenSSL reason";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

}  // namespace

absl::StatusOr<std::shared_ptr<LinkTls>> LinkTls::Create(const LinkTlsOptions& o) {
  // OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a peer that went away must be an error, not SIGPIPE.
  static const bool kIgnoreSigpipe = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)kIgnoreSigpipe;
  std::shared_ptr<LinkTls> t(new LinkTls());
  t->server_ = SSL_CTX_new(TLS_server_method());
  t->client_ = SSL_CTX_new(TLS_client_method());
  if (!t->server_ || !t->client_) return absl::InternalError("data link TLS: SSL_CTX_new failed");
  for (SSL_CTX* c : {t->server_, t->client_}) SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // No session tickets: after the handshake the listener never writes, so a readable outbound socket
  // means the peer closed it (TcpTransport's hang-up check).
  SSL_CTX_set_num_tickets(t->server_, 0);
  SSL_CTX_set_options(t->server_, SSL_OP_NO_TICKET);
  if (SSL_CTX_use_certificate_chain_file(t->server_, o.cert_file.c_str()) != 1)
    return absl::InvalidArgumentError(absl::StrCat("data link TLS: --tls-cert ", o.cert_file, ": ", OpenSslError()));
  if (SSL_CTX_use_PrivateKey_file(t->server_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(t->server_) != 1)
    return absl::InvalidArgumentError(absl::StrCat("data link TLS: --tls-key ", o.key_file, ": ", OpenSslError()));
  const std::string& ca = o.ca_file.empty() ? o.cert_file : o.ca_file;
  if (SSL_CTX_load_verify_locations(t->client_, ca.c_str(), nullptr) != 1)
    return absl::InvalidArgumentError(absl::StrCat("data link TLS: roots ", ca, ": ", OpenSslError()));
  // The next stage's chain must end at these roots; a non-self-signed root (a shared leaf) is accepted as
  // the anchor. Its name is not checked: the token's challenge-response inside TLS names the peer.
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(t->client_), X509_V_FLAG_PARTIAL_CHAIN);
  SSL_CTX_set_verify(t->client_, SSL_VERIFY_PEER, nullptr);
  return t;
}

LinkTls::~LinkTls() {
  if (server_) SSL_CTX_free(server_);
  if (client_) SSL_CTX_free(client_);
}

LinkSocket::~LinkSocket() {
  if (ssl_) SSL_free(ssl_);
}

absl::Status LinkSocket::StartTls(SSL_CTX* ctx, bool server) {
  ssl_ = SSL_new(ctx);
  if (!ssl_) return absl::InternalError("data link TLS: SSL_new failed");
  SSL_set_fd(ssl_, fd_);
  const int rc = server ? SSL_accept(ssl_) : SSL_connect(ssl_);
  if (rc == 1) return absl::OkStatus();
  std::string why = OpenSslError();
  if (!server && SSL_get_verify_result(ssl_) != X509_V_OK)
    why = absl::StrCat("certificate not trusted: ", X509_verify_cert_error_string(SSL_get_verify_result(ssl_)));
  return absl::UnauthenticatedError(absl::StrCat("TLS handshake failed: ", why));
}

bool LinkSocket::WriteFull(const void* data, size_t n) {
  if (!ssl_) return layerskip::WriteFull(fd_, data, n);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(n, 1 << 30));
    const int w = SSL_write(ssl_, p, chunk);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool LinkSocket::ReadFull(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const long r = ReadSome(p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

long LinkSocket::ReadSome(void* data, size_t n) {
  if (!ssl_) {
    for (;;) {
      const ssize_t r = ::recv(fd_, data, n, 0);
      if (r < 0 && errno == EINTR) continue;
      return static_cast<long>(r);
    }
  }
  const int r = SSL_read(ssl_, data, static_cast<int>(std::min<size_t>(n, 1 << 30)));
  return r;
}

}  // namespace layerskip
