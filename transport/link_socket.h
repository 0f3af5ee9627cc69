#pragma once
// One data-link connection: a TCP socket, wrapped in TLS when the cluster uses TLS (the worker's
// --tls-cert/--tls-key). Reads and writes are blocking and bounded by the socket's I/O timeout
// (SetIoTimeout); the receiver reads and the sender writes, never both on one link.
#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace layerskip {

// TLS for the data links. Empty cert_file: plain TCP.
struct LinkTlsOptions {
  std::string cert_file, key_file;  // this worker's certificate chain and key (PEM), served to the dialer
  std::string ca_file;              // roots that must have signed the next stage's certificate; empty: cert_file
};

// The OpenSSL contexts for both ends of a link (shared by every link of a transport).
class LinkTls {
 public:
  // INVALID_ARGUMENT naming the file that cannot be read or does not hold what it should.
  static absl::StatusOr<std::shared_ptr<LinkTls>> Create(const LinkTlsOptions& options);
  ~LinkTls();
  SSL_CTX* server() const { return server_; }
  SSL_CTX* client() const { return client_; }

 private:
  LinkTls() = default;
  SSL_CTX* server_ = nullptr;
  SSL_CTX* client_ = nullptr;
};

class LinkSocket {
 public:
  explicit LinkSocket(int fd) : fd_(fd) {}  // plain TCP; does not own fd
  ~LinkSocket();
  LinkSocket(const LinkSocket&) = delete;
  LinkSocket& operator=(const LinkSocket&) = delete;

  // TLS over the socket as the listener (accept) or the dialer (connect, checking the peer's chain).
  // UNAUTHENTICATED with OpenSSL's reason when the TLS handshake fails.
  absl::Status StartTls(SSL_CTX* ctx, bool server);

  bool WriteFull(const void* data, size_t n);
  bool ReadFull(void* data, size_t n);
  // Up to n bytes; <= 0 when the link closed or failed.
  long ReadSome(void* data, size_t n);
  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }

 private:
  int fd_;
  SSL* ssl_ = nullptr;
};

}  // namespace layerskip
