// layerskip-worker: one pipeline stage. The coordinator loads a shard of layers on it (Worker.LoadShard),
// wires the activation links and drives the rounds; see docs/pipeline.md.
//
//   layerskip-worker --listen HOST:PORT [--device cpu|cuda:N] [--token-file F] [--data-port P]
//                    [--tls-cert F --tls-key F [--tls-client-ca F]] [--allow-unauthenticated]
#include <csignal>
#include <cstdio>

#include "engine/tokenizer/tokenizer.h"
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "transport/tcp_transport.h"
#include "worker/worker_service.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "layerskip-worker: %s\n", message.c_str());
  return 2;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

void Usage() {
  std::fprintf(stderr,
               "usage: layerskip-worker --listen HOST:PORT [--device cpu|cuda:N] [--data-port P]\n"
               "       [--token-file FILE | env LAYERSKIP_CLUSTER_TOKEN] [--allow-unauthenticated]\n"
               "       [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--recv-timeout SECONDS]\n");
}

}  // namespace

int main(int argc, char** argv) {
  // This process links libprotobuf (gRPC): sentencepiece's bundled protobuf would abort it.
  layerskip::DisableSentencePiece("sentencepiece tokenizers are not supported in layerskip-worker");
  std::string listen, device = "cpu", token_file, tls_cert, tls_key, tls_client_ca;
  bool allow_unauthenticated = false;
  layerskip::worker::WorkerOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--listen" && value(&listen)) continue;
    if (a == "--device" && value(&device)) continue;
    if (a == "--token-file" && value(&token_file)) continue;
    if (a == "--tls-cert" && value(&tls_cert)) continue;
    if (a == "--tls-key" && value(&tls_key)) continue;
    if (a == "--tls-client-ca" && value(&tls_client_ca)) continue;
    if (a == "--data-port" && value(&v)) {
      options.data_port = std::atoi(v.c_str());
      continue;
    }
    if (a == "--recv-timeout" && value(&v)) {
      options.recv_timeout = absl::Seconds(std::atof(v.c_str()));
      continue;
    }
    if (a == "--allow-unauthenticated") {
      allow_unauthenticated = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      Usage();
      return 0;
    }
    Usage();
    return Fail(absl::StrCat("unknown or incomplete flag '", a, "'"));
  }
  if (listen.empty()) {
    Usage();
    return Fail("--listen HOST:PORT is required");
  }
  std::string host;
  int port = 0;
  if (auto s = layerskip::SplitHostPort(listen, &host, &port); !s.ok()) return Fail(std::string(s.message()));
  options.data_host = host;
  if (device == "cpu") {
    options.device = -1;
  } else if (device.rfind("cuda:", 0) == 0) {
    options.device = std::atoi(device.c_str() + 5);
  } else {
    return Fail(absl::StrCat("--device '", device, "' is not cpu or cuda:N"));
  }

  if (!token_file.empty()) {
    if (!ReadFile(token_file, &options.token)) return Fail(absl::StrCat("cannot read --token-file ", token_file));
    while (!options.token.empty() && (options.token.back() == '\n' || options.token.back() == '\r')) options.token.pop_back();
  } else if (const char* env = std::getenv("LAYERSKIP_CLUSTER_TOKEN")) {
    options.token = env;
  }
  if (options.token.empty() && !allow_unauthenticated)
    return Fail("no cluster token (--token-file or LAYERSKIP_CLUSTER_TOKEN); pass --allow-unauthenticated to run open");

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!tls_cert.empty() || !tls_key.empty()) {
    grpc::SslServerCredentialsOptions ssl(tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!ReadFile(tls_cert, &pair.cert_chain) || !ReadFile(tls_key, &pair.private_key))
      return Fail("cannot read --tls-cert / --tls-key");
    if (!tls_client_ca.empty() && !ReadFile(tls_client_ca, &ssl.pem_root_certs)) return Fail("cannot read --tls-client-ca");
    ssl.pem_key_cert_pairs.push_back(pair);
    creds = grpc::SslServerCredentials(ssl);
  }

  // Signals are handled by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto service = layerskip::worker::WorkerService::Create(options);
  if (!service.ok()) return Fail(std::string(service.status().message()));
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(listen, creds, &bound);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(service->get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  std::printf("layerskip-worker: listening on %s:%d (device %s, %s)\n", host.c_str(), bound, device.c_str(),
              options.token.empty() ? "UNAUTHENTICATED" : "cluster token required");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}
