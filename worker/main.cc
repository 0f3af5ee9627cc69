// layerskip-worker: one pipeline stage. The coordinator loads a shard of layers on it (Worker.LoadShard),
// wires the activation links and drives the rounds; see docs/pipeline.md. `--help` lists the flags.
#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "flags/flags.h"
#include "flags/token_file.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status.h"
#include "transport/tcp_transport.h"
#include "worker/worker_service.h"

namespace layerskip::worker {
namespace {

void Usage() {
  std::printf(
      "usage: layerskip-worker --listen HOST:PORT [flags]\n"
      "  --listen HOST:PORT          the Worker gRPC service (the coordinator's control plane)\n"
      "  --data-port P               TCP activation listener on the --listen host (default 0: any free port)\n"
      "  --advertise-address HOST    the address peers dial for this worker's data port (default: the --listen\n"
      "                              host; with a wildcard --listen (0.0.0.0, ::) the address this host's name\n"
      "                              resolves to, else startup fails; in Kubernetes pass the pod IP)\n"
      "  --transport auto|tcp|nccl|ipc  transports the coordinator may choose (default auto: any built in)\n"
      "  --device cpu|cuda|cuda:N    where the shard computes: its layers and KV cache live on that GPU, which\n"
      "                              the nccl and ipc transports use too (default cpu)\n"
      "  --token-file FILE           the cluster token (or env LAYERSKIP_CLUSTER_TOKEN); required unless\n"
      "  --allow-unauthenticated     runs without a token: any caller may drive this worker\n"
      "  --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]  TLS for the gRPC service and the data links\n"
      "  --data-tls-ca FILE          roots the next stage's --tls-cert must chain to (default: this worker's\n"
      "                              --tls-cert, i.e. one certificate shared by the cluster)\n"
      "  --recv-timeout SECONDS      how long a Verify waits for its activations, and a send may stall (default 30)\n"
      "  --kv-cache-positions N      refuse a shard whose KV cache (slots x context) is larger (default: no cap)\n"
      "  --gpu-memory-fraction F     with --device cuda:N: the share of the device's memory for this worker's\n"
      "                              weights, scratch and KV cache (default 0.9)\n"
      "  --help                      this text\n");
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool IsWildcard(const std::string& host) { return host == "0.0.0.0" || host == "::" || host.empty(); }

// The first non-loopback address this host's name resolves to (what a pod's hostname gives in Kubernetes).
absl::StatusOr<std::string> HostAddress() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return absl::UnavailableError("gethostname failed");
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(name, nullptr, &hints, &res) != 0) return absl::UnavailableError(absl::StrCat("'", name, "' does not resolve"));
  std::string found;
  for (addrinfo* a = res; a && found.empty(); a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    } else if (a->ai_family == AF_INET6) {
      const auto* in = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      if (IN6_IS_ADDR_LOOPBACK(&in->sin6_addr) || IN6_IS_ADDR_LINKLOCAL(&in->sin6_addr)) continue;
      inet_ntop(AF_INET6, &in->sin6_addr, text, sizeof(text));
    }
    found = text;
  }
  freeaddrinfo(res);
  if (found.empty()) return absl::UnavailableError(absl::StrCat("'", name, "' resolves to loopback only"));
  return found;
}

struct Config {
  WorkerOptions options;
  std::string listen, host, device = "cpu";
  std::shared_ptr<grpc::ServerCredentials> creds;
};

absl::StatusOr<Config> ConfigFromFlags(const flags::Flags& f) {
  Config c;
  WorkerOptions& o = c.options;
  c.listen = f.Get("listen");
  if (c.listen.empty()) return absl::InvalidArgumentError("--listen HOST:PORT is required");
  int port = 0;
  LS_RETURN_IF_ERROR(SplitHostPort(c.listen, &c.host, &port));
  o.data_host = c.host;
  LS_ASSIGN_OR_RETURN(int64_t data_port, f.GetInt("data-port", 0));
  if (data_port < 0 || data_port > 65535) return absl::InvalidArgumentError("--data-port must be in [0, 65535]");
  o.data_port = static_cast<int>(data_port);
  LS_ASSIGN_OR_RETURN(double recv, f.GetDouble("recv-timeout", 30.0));
  if (!(recv > 0.0 && recv <= 3600.0)) return absl::InvalidArgumentError("--recv-timeout must be in (0, 3600] seconds");
  o.recv_timeout = absl::Seconds(recv);

  o.advertise_host = f.Get("advertise-address");
  if (IsWildcard(o.advertise_host) && f.Has("advertise-address"))
    return absl::InvalidArgumentError(absl::StrCat("--advertise-address '", o.advertise_host,
                                                   "' is a wildcard; give an address the other stages can reach"));
  if (!f.Has("advertise-address")) {
    if (!IsWildcard(c.host)) {
      o.advertise_host = c.host;
    } else {
      absl::StatusOr<std::string> a = HostAddress();
      if (!a.ok())
        return absl::InvalidArgumentError(absl::StrCat("--listen ", c.listen, " is a wildcard and this host's address is "
                                                       "unknown (", a.status().message(), "): pass --advertise-address HOST"));
      o.advertise_host = *a;
    }
  }

  o.transport = f.Get("transport", "auto");
  if (o.transport != "auto" && o.transport != "tcp" && o.transport != "nccl" && o.transport != "ipc")
    return absl::InvalidArgumentError(absl::StrCat("--transport '", o.transport, "' is not auto, tcp, nccl or ipc"));
#ifndef LAYERSKIP_HAVE_NCCL
  if (o.transport == "nccl") return absl::InvalidArgumentError("--transport nccl: this worker was built without NCCL");
#endif
#ifndef LAYERSKIP_HAVE_CUDA_IPC
  if (o.transport == "ipc") return absl::InvalidArgumentError("--transport ipc: this worker was built without CUDA");
#endif

  c.device = f.Get("device", "cpu");
  absl::StatusOr<DeviceSpec> device = DeviceSpec::Parse(c.device);
  if (!device.ok()) return absl::InvalidArgumentError(absl::StrCat("--", device.status().message()));
  o.compute_device = *device;
  if (o.compute_device.is_cpu()) {
    if (o.transport == "ipc") return absl::InvalidArgumentError("--transport ipc needs --device cuda:N");
    o.device = -1;
  } else {
    o.device = o.compute_device.index;  // the shard's layers, its KV cache and the device transports
  }
  c.device = o.compute_device.ToString();
  // KV-cache sizing (engine/runtime/kv_budget.h): a cap on this worker's cache, and a CUDA device's share.
  LS_ASSIGN_OR_RETURN(o.kv_positions, f.GetInt("kv-cache-positions", 0));
  if (o.kv_positions < 0) return absl::InvalidArgumentError("--kv-cache-positions must be >= 0 (0: no cap)");
  LS_ASSIGN_OR_RETURN(o.gpu_memory_fraction, f.GetDouble("gpu-memory-fraction", 0.0));
  if (f.Has("gpu-memory-fraction")) {
    if (!(o.gpu_memory_fraction > 0 && o.gpu_memory_fraction <= 1))
      return absl::InvalidArgumentError("--gpu-memory-fraction must be in (0, 1]");
    if (o.device < 0)
      return absl::InvalidArgumentError("--gpu-memory-fraction sizes a CUDA device's KV cache: it needs --device cuda:N");
  }

  if (f.Has("token-file")) {
    LS_ASSIGN_OR_RETURN(o.token, flags::ReadTokenFile(f.Get("token-file"), "--token-file"));
  } else if (const char* env = std::getenv("LAYERSKIP_CLUSTER_TOKEN")) {
    o.token = env;
  }
  if (o.token.empty() && !f.Has("allow-unauthenticated"))
    return absl::InvalidArgumentError("no cluster token (--token-file or LAYERSKIP_CLUSTER_TOKEN); pass --allow-unauthenticated to run open");

  c.creds = grpc::InsecureServerCredentials();
  if (f.Has("tls-cert") || f.Has("tls-key")) {
    const std::string ca = f.Get("tls-client-ca");
    grpc::SslServerCredentialsOptions ssl(ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                     : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!ReadFile(f.Get("tls-cert"), &pair.cert_chain) || !ReadFile(f.Get("tls-key"), &pair.private_key))
      return absl::InvalidArgumentError("cannot read --tls-cert / --tls-key");
    if (!ca.empty() && !ReadFile(ca, &ssl.pem_root_certs)) return absl::InvalidArgumentError("cannot read --tls-client-ca");
    ssl.pem_key_cert_pairs.push_back(pair);
    c.creds = grpc::SslServerCredentials(ssl);
    o.data_tls.cert_file = f.Get("tls-cert");  // the data links use TLS too
    o.data_tls.key_file = f.Get("tls-key");
    o.data_tls.ca_file = f.Get("data-tls-ca");
  } else if (f.Has("data-tls-ca")) {
    return absl::InvalidArgumentError("--data-tls-ca needs --tls-cert and --tls-key");
  }
  return c;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "layerskip-worker: %s\n", std::string(s.message()).c_str());
  return 2;
}

int Main(int argc, char** argv) {
  if (flags::HelpRequested(argc, argv, 1)) {
    Usage();
    return 0;
  }
  // This process links libprotobuf (gRPC): sentencepiece's bundled protobuf would abort it.
  DisableSentencePiece("sentencepiece tokenizers are not supported in layerskip-worker");
  auto flags = ::layerskip::flags::Flags::Parse(argc, argv, 1,
                                 {"listen", "data-port", "advertise-address", "transport", "device", "token-file",
                                  "tls-cert", "tls-key", "tls-client-ca", "data-tls-ca", "recv-timeout",
                                  "kv-cache-positions", "gpu-memory-fraction"},
                                 {"allow-unauthenticated", "help"});
  if (!flags.ok()) return Fail(absl::InvalidArgumentError(absl::StrCat(flags.status().message(), " (see --help)")));
  absl::StatusOr<Config> config = ConfigFromFlags(*flags);
  if (!config.ok()) return Fail(config.status());
  // No usable GPU for --device: one line naming the device and the reason, exit 1.
  if (absl::Status d = CheckDevice(config->options.compute_device); !d.ok()) {
    std::fprintf(stderr, "layerskip-worker: %s\n", std::string(d.message()).c_str());
    return 1;
  }

  // Signals are handled by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto service = WorkerService::Create(config->options);
  if (!service.ok()) return Fail(service.status());
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(config->listen, config->creds, &bound);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(service->get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) return Fail(absl::UnavailableError(absl::StrCat("cannot listen on ", config->listen)));
  std::printf("layerskip-worker: listening on %s:%d (device %s, data %s, %s)\n", config->host.c_str(), bound,
              config->device.c_str(), (*service)->data_endpoint().c_str(),
              config->options.token.empty() ? "UNAUTHENTICATED" : "cluster token required");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace layerskip::worker

int main(int argc, char** argv) { return layerskip::worker::Main(argc, argv); }
