#include "coordinator/api/http/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/str_cat.h"

namespace layerskip::coordinator::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

const char* ReasonPhrase(int status) {
  return bhttp::obsolete_reason(static_cast<bhttp::status>(status)).data();
}

struct HttpServer::Impl {
  // Declared so that the io_context (and the sessions its handlers own) goes before what they use.
  HttpHandler handler;
  HttpServerOptions options;
  std::atomic<int> connections{0};
  std::atomic<int> busy{0};  // replies pending
  std::atomic<bool> stopping{false};
  std::optional<ssl::context> tls;
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;

  Impl(HttpHandler h, HttpServerOptions o) : handler(std::move(h)), options(std::move(o)) {}
  void Accept();
};

namespace {

// One connection. Stream is beast::tcp_stream or beast::ssl_stream<beast::tcp_stream>. Every member is
// touched on the connection's strand only; HttpReply calls from other threads are posted to it.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(HttpServer::Impl* server, Stream stream) : server_(server), stream_(std::move(stream)) {
    ++server_->connections;
  }
  ~Session() { --server_->connections; }

  void Run();
  // --- HttpReply, on the strand
  void DoSend(int status, const std::string& type, std::string body, std::vector<std::string> extra);
  void DoStartStream(const std::string& type);
  void DoWrite(std::string data);
  void DoEnd();
  void SetAbort(std::function<void()> f) {
    if (aborted_) {
      if (f) f();
    } else {
      on_abort_ = std::move(f);
    }
  }
  auto executor() { return beast::get_lowest_layer(stream_).get_executor(); }

 private:
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }
  void ReadRequest();
  void OnHeader(beast::error_code ec);
  void OnBody(beast::error_code ec);
  void Watch();
  void Abort();
  void ReplyDone();  // the reply is complete: next request or close
  void Close();
  void Pump();       // writes the next queued chunk
  void SendSimple(int status, std::string body);  // an error before the handler ran; closes after

  HttpServer::Impl* server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool keep_alive_ = false, aborted_ = false, replying_ = false, closed_ = false;
  bool head_only_ = false;  // a HEAD request: the headers of the response, no body
  bool watching_ = false;
  uint64_t watch_gen_ = 0;
  std::function<void()> on_abort_;
  // Streaming state.
  std::shared_ptr<bhttp::response<bhttp::empty_body>> stream_head_;
  std::shared_ptr<bhttp::response_serializer<bhttp::empty_body>> serializer_;
  bool head_written_ = false, writing_ = false, ending_ = false;
  std::string pending_;  // chunk data not yet written
  std::shared_ptr<std::string> current_;

};

template <class Stream>
class ReplyImpl : public HttpReply {
 public:
  explicit ReplyImpl(std::shared_ptr<Session<Stream>> s) : s_(std::move(s)) {}
  void Send(int status, const std::string& type, std::string body, std::vector<std::string> extra) override {
    net::post(s_->executor(), [s = s_, status, type, body = std::move(body), extra = std::move(extra)]() mutable {
      s->DoSend(status, type, std::move(body), std::move(extra));
    });
  }
  void StartStream(const std::string& type) override {
    net::post(s_->executor(), [s = s_, type] { s->DoStartStream(type); });
  }
  void Write(std::string data) override {
    net::post(s_->executor(), [s = s_, data = std::move(data)]() mutable { s->DoWrite(std::move(data)); });
  }
  void End() override {
    net::post(s_->executor(), [s = s_] { s->DoEnd(); });
  }
  void OnAbort(std::function<void()> f) override {
    net::dispatch(s_->executor(), [s = s_, f = std::move(f)]() mutable { s->SetAbort(std::move(f)); });
  }

 private:
  std::shared_ptr<Session<Stream>> s_;
};

template <class Stream>
void Session<Stream>::Run() {
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    net::dispatch(executor(), [self = this->shared_from_this()] { self->ReadRequest(); });
  } else {
    tcp().expires_after(server_->options.header_timeout);
    stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->Close();
      self->ReadRequest();
    });
  }
}

template <class Stream>
void Session<Stream>::ReadRequest() {
  if (server_->stopping) return Close();
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(server_->options.header_limit));
  parser_->body_limit(server_->options.body_limit);
  tcp().expires_after(server_->options.header_timeout);  // the whole head, however it trickles in
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

template <class Stream>
void Session<Stream>::OnHeader(beast::error_code ec) {
  if (ec == bhttp::error::header_limit) return SendSimple(431, "request header fields too large");
  if (ec == bhttp::error::body_limit)  // a Content-Length over the limit is refused before the body
    return SendSimple(413, absl::StrCat("request body larger than ", server_->options.body_limit, " bytes"));
  if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted) return Close();
  if (ec) return SendSimple(400, absl::StrCat("bad request: ", ec.message()));
  if (parser_->is_done()) return OnBody({});
  tcp().expires_after(server_->options.body_timeout);
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

template <class Stream>
void Session<Stream>::OnBody(beast::error_code ec) {
  if (ec == bhttp::error::body_limit)
    return SendSimple(413, absl::StrCat("request body larger than ", server_->options.body_limit, " bytes"));
  if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted) return Close();
  if (ec) return SendSimple(400, absl::StrCat("bad request: ", ec.message()));
  tcp().expires_never();
  bhttp::request<bhttp::string_body> req = parser_->release();
  keep_alive_ = req.keep_alive() && !server_->stopping;
  head_only_ = req.method() == bhttp::verb::head;
  HttpRequest r;
  r.method = std::string(req.method_string());
  const std::string target(req.target());
  r.path = target.substr(0, target.find('?'));
  if (auto it = req.find(bhttp::field::authorization); it != req.end()) r.authorization = std::string(it->value());
  if (auto it = req.find(bhttp::field::content_type); it != req.end()) r.content_type = std::string(it->value());
  r.body = std::move(req.body());
  replying_ = true;
  ++server_->busy;
  Watch();
  server_->handler(r, std::make_shared<ReplyImpl<Stream>>(this->shared_from_this()));
}

// Waits for the socket to become readable without reading: end of stream or an error means the client
// went away; data (a pipelined request) ends the watch.
template <class Stream>
void Session<Stream>::Watch() {
  watching_ = true;
  const uint64_t gen = ++watch_gen_;
  tcp().socket().async_wait(tcp::socket::wait_read, net::bind_executor(executor(), [self = this->shared_from_this(), gen](beast::error_code ec) {
    if (gen != self->watch_gen_ || !self->watching_) return;
    self->watching_ = false;
    if (ec == net::error::operation_aborted || !self->replying_) return;
    char c;
    const ssize_t n = ec ? -1 : ::recv(self->tcp().socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) self->Abort();
  }));
}

template <class Stream>
void Session<Stream>::Abort() {
  if (aborted_) return;
  aborted_ = true;
  if (replying_) {
    replying_ = false;
    --server_->busy;
  }
  if (auto f = std::move(on_abort_)) {
    on_abort_ = nullptr;
    f();
  }
  Close();
}

template <class Stream>
void Session<Stream>::Close() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  tcp().close();
}

template <class Stream>
void Session<Stream>::ReplyDone() {
  if (!replying_) return;
  replying_ = false;
  --server_->busy;
  on_abort_ = nullptr;
  if (watching_) {
    watching_ = false;
    beast::error_code ec;
    tcp().socket().cancel(ec);
  }
  stream_head_.reset();
  serializer_.reset();
  head_written_ = writing_ = ending_ = false;
  if (!keep_alive_ || server_->stopping) return Close();
  ReadRequest();
}

template <class Stream>
void Session<Stream>::SendSimple(int status, std::string body) {
  keep_alive_ = false;
  head_only_ = false;
  replying_ = true;
  ++server_->busy;
  DoSend(status, "text/plain; charset=utf-8", body + "\n", {});
}

template <class Stream>
void Session<Stream>::DoSend(int status, const std::string& type, std::string body, std::vector<std::string> extra) {
  if (aborted_ || closed_ || !replying_ || stream_head_) return;
  auto res = std::make_shared<bhttp::response<bhttp::string_body>>(static_cast<bhttp::status>(status), 11);
  res->set(bhttp::field::server, "layerskip");
  res->set(bhttp::field::content_type, type);
  for (const std::string& h : extra)
    if (size_t c = h.find(':'); c != std::string::npos)
      res->set(h.substr(0, c), h.substr(c + 1 + (c + 1 < h.size() && h[c + 1] == ' ')));
  res->keep_alive(keep_alive_);
  if (head_only_) {
    res->content_length(body.size());
  } else {
    res->body() = std::move(body);
    res->prepare_payload();
  }
  tcp().expires_after(server_->options.write_timeout);
  bhttp::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
    self->tcp().expires_never();
    if (ec) return self->Abort();
    self->ReplyDone();
  });
}

template <class Stream>
void Session<Stream>::DoStartStream(const std::string& type) {
  if (aborted_ || closed_ || !replying_ || stream_head_) return;
  stream_head_ = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::ok, 11);
  stream_head_->set(bhttp::field::server, "layerskip");
  stream_head_->set(bhttp::field::content_type, type);
  stream_head_->set(bhttp::field::cache_control, "no-cache");
  stream_head_->keep_alive(keep_alive_);
  stream_head_->chunked(true);
  serializer_ = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*stream_head_);
  writing_ = true;
  tcp().expires_after(server_->options.write_timeout);
  bhttp::async_write_header(stream_, *serializer_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
    self->tcp().expires_never();
    self->writing_ = false;
    if (ec) return self->Abort();
    self->head_written_ = true;
    self->Pump();
  });
}

template <class Stream>
void Session<Stream>::DoWrite(std::string data) {
  if (aborted_ || closed_ || !stream_head_ || ending_) return;
  pending_ += data;
  Pump();
}

template <class Stream>
void Session<Stream>::DoEnd() {
  if (aborted_ || closed_ || !stream_head_ || ending_) return;
  ending_ = true;
  Pump();
}

template <class Stream>
void Session<Stream>::Pump() {
  if (writing_ || !head_written_ || aborted_ || closed_) return;
  auto done = [self = this->shared_from_this()](beast::error_code ec, size_t) {
    self->tcp().expires_never();
    self->writing_ = false;
    if (ec) return self->Abort();
    self->Pump();
  };
  if (!pending_.empty()) {
    current_ = std::make_shared<std::string>(std::move(pending_));
    pending_.clear();
    writing_ = true;
    tcp().expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk(net::buffer(*current_)), std::move(done));
    return;
  }
  if (ending_) {
    writing_ = true;
    tcp().expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk_last(), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->tcp().expires_never();
      self->writing_ = false;
      if (ec) return self->Abort();
      self->ReplyDone();
    });
  }
}

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopping) return;
    if (!ec) {
      if (connections.load() >= options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);
      } else if (tls) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            this, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls))->Run();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(this, beast::tcp_stream(std::move(socket)))->Run();
      }
    }
    Accept();
  });
}

HttpServer::HttpServer(HttpHandler handler, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(handler), std::move(options))) {}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0)); }

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port, const std::string& what) {
  Impl& m = *impl_;
  if (!m.options.tls_cert_pem.empty()) {
    m.tls.emplace(ssl::context::tls_server);
    beast::error_code ec;
    m.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                           ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1, ec);
    m.tls->use_certificate_chain(net::buffer(m.options.tls_cert_pem), ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("--tls-cert: ", ec.message()));
    m.tls->use_private_key(net::buffer(m.options.tls_key_pem), ssl::context::pem, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", ec.message()));
  }
  beast::error_code ec;
  tcp::resolver resolver(m.ioc);
  const std::string h = host.empty() ? "0.0.0.0" : host;
  auto results = resolver.resolve(h, std::to_string(port), tcp::resolver::passive, ec);
  if (ec || results.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, ": cannot resolve '", h, "': ", ec.message()));
  tcp::endpoint endpoint = results.begin()->endpoint();
  m.acceptor.emplace(m.ioc);
  m.acceptor->open(endpoint.protocol(), ec);
  if (!ec) m.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(endpoint, ec);
  if (!ec) m.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    m.acceptor.reset();
    return absl::UnavailableError(absl::StrCat(what, ": cannot listen on ", h, ":", port, ": ", ec.message()));
  }
  const int bound = m.acceptor->local_endpoint().port();
  m.Accept();
  for (int i = 0; i < std::max(1, m.options.threads); ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  return bound;
}

void HttpServer::Stop(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  if (m.threads.empty()) return;
  m.stopping = true;
  net::post(m.ioc, [&m] {
    beast::error_code ec;
    if (m.acceptor) m.acceptor->close(ec);
  });
  const auto until = std::chrono::steady_clock::now() + grace;
  while (m.busy.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  m.ioc.stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
}

}  // namespace layerskip::coordinator::http
