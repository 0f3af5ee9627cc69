#pragma once
// An HTTP/1.1 server on Boost.Beast's asynchronous model: a few io threads serve every connection, so idle
// or slow clients cost a socket and a timer, never a thread. Each request head must arrive within
// `header_timeout` in total (a client trickling one byte at a time is cut off; the keep-alive wait between
// requests counts too), heads are bounded by `header_limit` and bodies by `body_limit` / `body_timeout`.
// A reply is a complete response or a chunked stream (server-sent events); while a reply is pending the
// server watches the socket and reports a client that went away (OnAbort), so its work can be cancelled.
// TLS when a certificate and key are given.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace layerskip::coordinator::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query
  std::string body;
  std::optional<std::string> authorization;  // the Authorization header, if any
  std::string content_type;
};

// One request's reply. Thread-safe: any thread may call it, in this order: Send, or StartStream, Write...,
// End. Calls after the client went away do nothing.
class HttpReply {
 public:
  virtual ~HttpReply() = default;
  // A complete response with Content-Length. `extra_headers` are "Name: value" lines without CRLF.
  virtual void Send(int status, const std::string& content_type, std::string body,
                    std::vector<std::string> extra_headers = {}) = 0;
  // Starts a chunked 200 response (text/event-stream for SSE).
  virtual void StartStream(const std::string& content_type) = 0;
  // One chunk; chunks queued while a write is in flight are merged into one.
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // `f` runs once (on an io thread) if the client disconnects or stops reading before the reply is
  // complete. Set it before the work it cancels can finish.
  virtual void OnAbort(std::function<void()> f) = 0;
};

using HttpHandler = std::function<void(const HttpRequest&, std::shared_ptr<HttpReply>)>;

struct HttpServerOptions {
  int threads = 2;
  std::chrono::milliseconds header_timeout{10000};  // a whole request head, including the keep-alive wait
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds write_timeout{60000};   // one write to a client that does not read
  size_t header_limit = 16 * 1024;
  size_t body_limit = 8 << 20;
  int max_connections = 1024;  // more are closed at once
  std::string tls_cert_pem, tls_key_pem;  // both: HTTPS
};

class HttpServer {
 public:
  // `handler` runs on an io thread; it must not block (hand long work off and reply later).
  HttpServer(HttpHandler handler, HttpServerOptions options);
  ~HttpServer();
  // Binds host:port ("" or "0.0.0.0": every address; port 0 picks a free one) and starts serving;
  // returns the bound port. `what` names the flag in errors.
  absl::StatusOr<int> Start(const std::string& host, int port, const std::string& what);
  // Stops accepting, waits up to `grace` for pending replies to be written, closes everything.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// "404 Not Found" style reason phrases for the status codes the service uses.
const char* ReasonPhrase(int status);

}  // namespace layerskip::coordinator::http
