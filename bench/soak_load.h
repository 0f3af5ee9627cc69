#pragma once
// layerskip-loadgen --duration: soak load. `concurrency` client threads send Generate streams back to back
// for `seconds`: random prompts and lengths, some cancelled by the client mid-stream, some with a short
// deadline, the rest with a long one (`hang_seconds`: a stream still open then counts as hung). Prints
// requests sent, completed, failed by status code, and the streams that were lost (ended with an error
// after tokens had streamed although the client neither cancelled nor set a short deadline) or short
// (OK with fewer tokens than asked). Returns 0 when nothing was lost, short or hung.
#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "layerskip/v1/inference.grpc.pb.h"

namespace layerskip::bench {

struct SoakOptions {
  std::string server;
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // TLS (--tls-ca) or insecure
  std::string auth_token;
  int concurrency = 8;
  double seconds = 60;
  int max_tokens = 64;        // each request asks for a random count in [1, max_tokens]
  int prompt_tokens = 16;     // random length in [1, prompt_tokens]
  double cancel_fraction = 0.1;
  double deadline_fraction = 0.1;
  double hang_seconds = 120;
  int vocab = 0;
};

int RunSoak(const SoakOptions& options, const v1::GenerateRequest& base);

}  // namespace layerskip::bench
