#include "tests/service/coordinator_process.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace layerskip::testing {

bool WaitFor(const std::function<bool()>& pred, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

CoordinatorProcess::CoordinatorProcess(const std::vector<std::string>& args, const std::string& binary) {
  int out[2];
  if (::pipe(out) != 0) return;
  char tmpl[] = "/tmp/layerskip_coord_stderr_XXXXXX";
  const int err_fd = ::mkstemp(tmpl);
  stderr_path_ = tmpl;
  std::vector<std::string> argv = {std::string(LAYERSKIP_BIN_DIR) + "/" + binary};
  if (std::find(args.begin(), args.end(), "--listen") == args.end()) argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
  argv.insert(argv.end(), {"--metrics-port", "0"});
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::dup2(err_fd, 2);
    ::close(out[0]);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err_fd);
  // Read stdout lines until "serving" (or EOF / 60 s).
  std::string buf;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int port = 0;
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c[512];
    const ssize_t n = ::read(out[0], c, sizeof c);
    if (n <= 0) break;
    buf.append(c, static_cast<size_t>(n));
    if (buf.find("serving\n") != std::string::npos) {
      size_t at = buf.find("(port ");
      if (at != std::string::npos) port = std::atoi(buf.c_str() + at + 6);
      at = buf.find("metrics on port ");
      if (at != std::string::npos) metrics_port_ = std::atoi(buf.c_str() + at + 16);
      at = buf.find("http on port ");
      if (at != std::string::npos) http_port_ = std::atoi(buf.c_str() + at + 13);
      break;
    }
  }
  // Keep draining stdout in the background so the child never blocks on a full pipe.
  std::thread([fd = out[0]] {
    char c[512];
    while (::read(fd, c, sizeof c) > 0) {
    }
    ::close(fd);
  }).detach();
  port_ = port;
}

CoordinatorProcess::~CoordinatorProcess() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (!stderr_path_.empty()) ::unlink(stderr_path_.c_str());
}

std::string CoordinatorProcess::stderr_text() const {
  std::ifstream in(stderr_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int CoordinatorProcess::Wait(double seconds) {
  int status = 0;
  const bool done = WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, seconds);
  if (!done) return -1;
  exited_ = true;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

std::unique_ptr<v1::Inference::Stub> CoordinatorProcess::Stub() const {
  return v1::Inference::NewStub(grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::health::v1::Health::Stub> CoordinatorProcess::HealthStub() const {
  return grpc::health::v1::Health::NewStub(grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
}

int CoordinatorProcess::HealthStatus(const std::string& service) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest q;
  q.set_service(service);
  grpc::health::v1::HealthCheckResponse r;
  if (!HealthStub()->Check(&ctx, q, &r).ok()) return -1;
  return r.status();
}

int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::pair<int, std::string> HttpRequest(int port, const std::string& method, const std::string& path,
                                        const std::string& body, const std::string& extra_headers) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {0, ""};
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra_headers;
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (resp.size() < 12) return {0, ""};
  const size_t head = resp.find("\r\n\r\n");
  return {std::atoi(resp.c_str() + 9), head == std::string::npos ? "" : resp.substr(head + 4)};
}

std::pair<int, std::string> CoordinatorProcess::HttpGet(const std::string& path, int port) const {
  return HttpRequest(port < 0 ? metrics_port_ : port, "GET", path);
}

double CoordinatorProcess::Metric(const std::string& prefix) const {
  const std::string text = HttpGet("/metrics").second;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0 && line.size() > prefix.size() && line[prefix.size()] == ' ')
      return std::atof(line.c_str() + line.rfind(' ') + 1);
  return -1;
}

std::string CliGenerateJson(const std::string& model, const std::string& args) {
  const std::string cmd =
      std::string(LAYERSKIP_BIN_DIR) + "/layerskip generate --model " + model + " --json --threads 1 " + args;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << cmd;
  return out;
}

}  // namespace layerskip::testing
