#pragma once
// A real layerskip-worker process on loopback for the pipeline tests: started with a cluster token,
// its port read from its first line of output; killed with SIGKILL or stopped with SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace layerskip::testing {

class WorkerProcess {
 public:
  // port 0: any free port (see endpoint()). `extra`: more flags (e.g. --device cuda:0).
  bool Start(const std::string& token, int port = 0, const std::vector<std::string>& extra = {}) {
    int out[2];
    if (pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      setenv("LAYERSKIP_CLUSTER_TOKEN", token.c_str(), 1);
      const char* dir = std::getenv("LAYERSKIP_BIN_DIR");  // binaries packed elsewhere (tests/gpu/pack.sh)
      const std::string bin = std::string(dir && *dir ? dir : LAYERSKIP_BIN_DIR) + "/layerskip-worker";
      const std::string listen = "127.0.0.1:" + std::to_string(port);
      std::vector<std::string> args = {bin, "--listen", listen, "--recv-timeout", "20"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    // "layerskip-worker: listening on 127.0.0.1:PORT (...)"
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && poll(&p, 1, 20000) > 0) {
      char buf[256];
      const ssize_t n = read(out[0], buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    const size_t at = line.find("127.0.0.1:");
    if (at == std::string::npos) {
      Kill();
      return false;
    }
    port_ = std::atoi(line.c_str() + at + 10);
    return port_ > 0;
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  void Kill() { Signal(SIGKILL); }
  // SIGSTOP / SIGCONT: a frozen process keeps its sockets but answers nothing.
  void Freeze() const {
    if (pid_ > 0) kill(pid_, SIGSTOP);
  }
  void Thaw() const {
    if (pid_ > 0) kill(pid_, SIGCONT);
  }
  void Stop() { Signal(SIGTERM); }
  ~WorkerProcess() { Kill(); }

 private:
  void Signal(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace layerskip::testing
