// The coordinator's HTTP servers (Boost.Beast) in a real process on loopback: /health stays prompt while
// idle and trickling (slowloris) connections are open, heads and bodies are bounded, a client that
// disconnects mid-stream frees its sequence, and malformed requests get clear errors. The OpenAI routes
// with real clients (openai, curl) are tested in tests/service/openai_api_test.py.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/service/coordinator_process.h"

namespace layerskip::testing {
namespace {

const std::string kModel = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// 20 idle connections and 5 that trickle a request head one byte at a time must not delay /health: the
// old single-threaded server took 9.8 s (idle) and 22.7 s (trickling) here. Each probe must answer within
// 200 ms; one probe in ten may be late (the machine is shared) but never by more than 2 s.
TEST(HttpServerTest, HealthStaysPromptUnderIdleAndTricklingConnections) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  for (int port : {server.metrics_port(), server.http_port()}) {
    std::vector<int> idle;
    for (int i = 0; i < 20; ++i) {
      const int fd = ConnectLoopback(port);
      ASSERT_GE(fd, 0);
      idle.push_back(fd);
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> tricklers;
    for (int i = 0; i < 5; ++i) {
      tricklers.emplace_back([&stop, port] {
        const int fd = ConnectLoopback(port);
        const std::string head = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
        size_t sent = 0;
        while (!stop && fd >= 0) {
          const char c = sent < head.size() ? head[sent] : 'a';
          if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;  // closed by the server's header deadline
          ++sent;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (fd >= 0) ::close(fd);
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // every connection is open and accepted
    std::vector<double> latency;
    for (int i = 0; i < 10; ++i) {
      const auto start = std::chrono::steady_clock::now();
      auto [code, body] = server.HttpGet("/health", port);
      latency.push_back(Seconds(start));
      EXPECT_EQ(code, 200) << "port " << port;
      EXPECT_EQ(body, "SERVING\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop = true;
    for (std::thread& t : tricklers) t.join();
    for (int fd : idle) ::close(fd);
    std::sort(latency.begin(), latency.end());
    EXPECT_LT(latency[8], 0.2) << "port " << port << ": the second slowest /health took " << latency[8] << " s";
    EXPECT_LT(latency[9], 2.0) << "port " << port << ": the slowest /health took " << latency[9] << " s";
  }
}

TEST(HttpServerTest, HeadsAndBodiesAreBounded) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  const std::string big_header = "X-Big: " + std::string(20000, 'a') + "\r\n";
  EXPECT_EQ(HttpRequest(server.metrics_port(), "GET", "/health", "", big_header).first, 431);
  EXPECT_EQ(HttpRequest(server.http_port(), "GET", "/health", "", big_header).first, 431);
  const std::string big_body = "{\"prompt\": \"" + std::string(9 << 20, 'a') + "\"}";
  EXPECT_EQ(HttpRequest(server.http_port(), "POST", "/v1/completions", big_body).first, 413);
  // Not HTTP at all: a 400, and the server keeps serving.
  const int fd = ConnectLoopback(server.http_port());
  ASSERT_GE(fd, 0);
  const std::string junk = "\x16\x03\x01 not http\r\n\r\n";
  ASSERT_EQ(::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  char buf[256] = {};
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  ASSERT_GT(::read(fd, buf, sizeof buf - 1), 12);
  EXPECT_EQ(std::string(buf).substr(0, 12), "HTTP/1.1 400");
  ::close(fd);
  EXPECT_EQ(server.HttpGet("/health", server.http_port()).first, 200);
  EXPECT_EQ(server.HttpGet("/nope").first, 404);
  EXPECT_EQ(HttpRequest(server.metrics_port(), "POST", "/health", "{}").first, 405);
  // HEAD: the status and headers only.
  auto [head_code, head_body] = HttpRequest(server.metrics_port(), "HEAD", "/health");
  EXPECT_EQ(head_code, 200);
  EXPECT_EQ(head_body, "");
}

// A streaming client that goes away frees its slot at once: with one slot, the next request is served
// and the abandoned one stops long before its 1500 tokens.
TEST(HttpServerTest, ClientDisconnectMidStreamCancelsTheRequest) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0", "--num-slots", "1",
                             "--max-batch-size", "1"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  const int fd = ConnectLoopback(server.http_port());
  ASSERT_GE(fd, 0);
  const std::string body = R"({"prompt": "Hello", "max_tokens": 1500, "ignore_eos": true, "stream": true})";
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string got;
  const auto start = std::chrono::steady_clock::now();
  while (got.find("data: {") == std::string::npos && Seconds(start) < 60) {
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ASSERT_NE(got.find("data: {"), std::string::npos) << got;
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  ::close(fd);
  const std::string running = "layerskip:num_requests_running{model_name=\"tiny-random\"}";
  EXPECT_TRUE(WaitFor([&] { return server.Metric(running) == 0; }, 60)) << server.Metric(running);
  auto [code, response] = HttpRequest(server.http_port(), "POST", "/v1/completions", R"({"prompt": "Hi", "max_tokens": 4})");
  EXPECT_EQ(code, 200) << response;
  const double generated = server.Metric("layerskip:generation_tokens_total{model_name=\"tiny-random\"}");
  EXPECT_LT(generated, 1500) << "the abandoned request kept generating";
  EXPECT_GE(generated, 5);
}

// 64 concurrent server-sent-event streams (more than the 32 slots: half of them queue) all finish with
// `data: [DONE]`, while /health on the same port stays prompt (no stream holds a thread).
TEST(HttpServerTest, ManyConcurrentStreamsAndHealth) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0", "--max-batch-size", "32"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  std::atomic<int> done{0}, complete{0};
  std::vector<std::thread> streams;
  for (int i = 0; i < 64; ++i) {
    streams.emplace_back([&, i] {
      const std::string body = R"({"prompt": [)" + std::to_string(5 + i) +
                               R"(], "max_tokens": 200, "ignore_eos": true, "stream": true})";
      auto [code, text] = HttpRequest(server.http_port(), "POST", "/v1/completions", body);
      if (code == 200 && text.find("data: [DONE]") != std::string::npos &&
          text.find("\"finish_reason\":\"length\"") != std::string::npos)
        ++complete;
      ++done;
    });
  }
  std::vector<double> latency;
  while (done < 64 && latency.size() < 200) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(server.HttpGet("/health", server.http_port()).first, 200);
    latency.push_back(Seconds(start));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (std::thread& t : streams) t.join();
  EXPECT_EQ(complete.load(), 64);
  ASSERT_FALSE(latency.empty());
  std::sort(latency.begin(), latency.end());
  EXPECT_LT(latency[latency.size() / 2], 0.2) << "median /health during 64 streams: " << latency[latency.size() / 2] << " s";
}

// HTTP and gRPC requests go into the same engine queue and run in the same batch.
TEST(HttpServerTest, HttpAndGrpcRequestsBatchTogether) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0", "--max-batch-size", "4"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(2000);
  q.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, q);
  std::thread http([&] {
    auto [code, body] = HttpRequest(server.http_port(), "POST", "/v1/completions",
                                    R"({"prompt": [5], "max_tokens": 2000, "ignore_eos": true})");
    EXPECT_EQ(code, 200) << body;
    EXPECT_NE(body.find("\"completion_tokens\":2000"), std::string::npos) << body.substr(0, 200);
  });
  const std::string running = "layerskip:num_requests_running{model_name=\"tiny-random\"}";
  EXPECT_TRUE(WaitFor([&] { return server.Metric(running) == 2; }, 30)) << "never saw both requests in the batch";
  v1::GenerateResponse m;
  int tokens = 0;
  while (reader->Read(&m)) tokens += m.token_ids_size();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 2000);
  http.join();
}

// With a token, the OpenAI routes need `Authorization: Bearer <token>` (the scheme in any case, as on
// gRPC); the probes stay open.
TEST(HttpServerTest, BearerTokenOnTheApiRoutesOnly) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--http-port", "0", "--auth-token", "s3cret"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  const int port = server.http_port();
  auto [code, body] = HttpRequest(port, "GET", "/v1/models");
  EXPECT_EQ(code, 401);
  EXPECT_NE(body.find("\"type\":\"authentication_error\""), std::string::npos) << body;
  EXPECT_EQ(HttpRequest(port, "GET", "/v1/models", "", "Authorization: Bearer wrong\r\n").first, 401);
  EXPECT_EQ(HttpRequest(port, "GET", "/v1/models", "", "Authorization: Basic czNjcmV0\r\n").first, 401);
  for (const char* scheme : {"Bearer", "bearer", "BEARER"})
    EXPECT_EQ(HttpRequest(port, "GET", "/v1/models", "", std::string("Authorization: ") + scheme + " s3cret\r\n").first, 200)
        << scheme;
  EXPECT_EQ(server.HttpGet("/health", port).first, 200);
  EXPECT_EQ(server.HttpGet("/metrics", port).first, 200);
  // gRPC takes the scheme in any case too.
  for (const char* value : {"bearer s3cret", "BEARER s3cret", "Bearer  s3cret"}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", value);
    v1::ModelInfo info;
    EXPECT_TRUE(server.Stub()->GetModelInfo(&ctx, {}, &info).ok()) << value;
  }
  grpc::ClientContext bad;
  bad.AddMetadata("authorization", "bearer wrong");
  v1::ModelInfo info;
  EXPECT_EQ(server.Stub()->GetModelInfo(&bad, {}, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(HttpServerTest, WarnsWhenATokenCrossesTheNetworkInPlaintext) {
  CoordinatorProcess local({"--model", kModel, "--threads", "1", "--auth-token", "t"});
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local.stderr_text().find("plaintext"), std::string::npos) << local.stderr_text();
  // 0.0.0.0 is not loopback (the test connects to nothing: the warning is printed at start).
  CoordinatorProcess open({"--model", kModel, "--threads", "1", "--auth-token", "t", "--listen", "0.0.0.0:0"});
  ASSERT_TRUE(open.ok()) << open.stderr_text();
  EXPECT_NE(open.stderr_text().find("warning: a bearer token is required but --listen 0.0.0.0:0 is not loopback"),
            std::string::npos)
      << open.stderr_text();
}

}  // namespace
}  // namespace layerskip::testing
