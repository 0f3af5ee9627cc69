// layerskip client: one Generate stream to a layerskip-coordinator; the text is printed as it arrives and
// the statistics at the end (stderr), or one JSON object with --json.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "engine/util/status.h"
#include "layerskip/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace layerskip::cli {
namespace {

const char* ModeName(v1::DecodeMode m) {
  switch (m) {
    case v1::DECODE_MODE_AUTOREGRESSIVE: return "autoregressive";
    case v1::DECODE_MODE_EARLY_EXIT: return "early-exit";
    case v1::DECODE_MODE_SELF_SPECULATIVE: return "self-speculative";
    default: return "unspecified";
  }
}

const char* FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_CANCELLED: return "cancelled";
    default: return "";
  }
}

absl::StatusOr<v1::GenerateRequest> RequestFromFlags(const Flags& flags) {
  v1::GenerateRequest q;
  if (flags.Has("prompt") == flags.Has("prompt-ids"))
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  if (flags.Has("prompt")) q.set_prompt(flags.Get("prompt"));
  else {
    LS_ASSIGN_OR_RETURN(std::vector<int> ids, ParseIntList(flags.Get("prompt-ids"), "--prompt-ids"));
    for (int id : ids) q.add_prompt_ids(id);
  }
  // Unset flags stay unset: the server's defaults apply and the server validates everything.
  if (flags.Has("max-tokens")) { LS_ASSIGN_OR_RETURN(int64_t v, flags.GetInt("max-tokens", 0)); q.set_max_tokens(static_cast<int32_t>(v)); }
  if (flags.Has("temperature")) { LS_ASSIGN_OR_RETURN(double v, flags.GetDouble("temperature", 0)); q.set_temperature(static_cast<float>(v)); }
  if (flags.Has("top-k")) { LS_ASSIGN_OR_RETURN(int64_t v, flags.GetInt("top-k", 0)); q.set_top_k(static_cast<int32_t>(v)); }
  if (flags.Has("top-p")) { LS_ASSIGN_OR_RETURN(double v, flags.GetDouble("top-p", 1)); q.set_top_p(static_cast<float>(v)); }
  if (flags.Has("seed")) { LS_ASSIGN_OR_RETURN(int64_t v, flags.GetInt("seed", 0)); q.set_seed(static_cast<uint64_t>(v)); }
  if (flags.Get("exit-layer") == "auto") q.set_auto_exit_layer(true);  // a pipeline's split still fixes E
  else if (flags.Has("exit-layer")) { LS_ASSIGN_OR_RETURN(int64_t v, flags.GetInt("exit-layer", 0)); q.set_exit_layer(static_cast<int32_t>(v)); }
  for (const std::string& s : flags.GetAll("stop")) q.add_stop(s);
  q.set_ignore_eos(flags.Has("ignore-eos"));
  if (flags.Has("mode")) {
    const std::string m = flags.Get("mode");
    if (m == "autoregressive") q.set_mode(v1::DECODE_MODE_AUTOREGRESSIVE);
    else if (m == "early-exit") q.set_mode(v1::DECODE_MODE_EARLY_EXIT);
    else if (m == "self-speculative") q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
    else return absl::InvalidArgumentError(absl::StrCat("--mode: unknown mode '", m, "'"));
  }
  if (flags.Has("speculations")) {
    if (flags.Get("speculations") == "auto") q.set_auto_speculations(true);
    else { LS_ASSIGN_OR_RETURN(int64_t v, flags.GetInt("speculations", 4)); q.set_speculations(static_cast<int32_t>(v)); }
  }
  return q;
}

absl::Status Client(const Flags& flags) {
  if (!flags.Has("server")) return absl::InvalidArgumentError("--server HOST:PORT is required");
  LS_ASSIGN_OR_RETURN(v1::GenerateRequest request, RequestFromFlags(flags));
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (flags.Has("tls-ca")) {
    std::ifstream in(flags.Get("tls-ca"));
    if (!in) return absl::InvalidArgumentError(absl::StrCat("--tls-ca: cannot read '", flags.Get("tls-ca"), "'"));
    std::stringstream ss;
    ss << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ss.str();
    creds = grpc::SslCredentials(ssl);
  }
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(flags.Get("server"), creds));
  grpc::ClientContext context;
  if (flags.Has("auth-token")) context.AddMetadata("authorization", "Bearer " + flags.Get("auth-token"));
  LS_ASSIGN_OR_RETURN(double timeout, flags.GetDouble("timeout", 0));
  if (timeout > 0)
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(timeout)));
  const bool json = flags.Has("json");
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse msg;
  std::vector<int> ids;
  std::string text;
  v1::GenerationSummary summary;
  while (reader->Read(&msg)) {
    ids.insert(ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    text += msg.text();
    if (!json && !msg.text().empty()) {
      std::fwrite(msg.text().data(), 1, msg.text().size(), stdout);
      std::fflush(stdout);
    }
    if (msg.has_summary()) summary = msg.summary();
  }
  grpc::Status st = reader->Finish();
  if (!json) {
    std::printf("\n");
    std::fflush(stdout);
  }
  if (!st.ok())
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()), absl::StrCat("server: ", st.error_message()));
  const v1::SpeculationStats& s = summary.speculation();
  if (json) {
    nlohmann::json out = {{"ids", ids},
                          {"text", text},
                          {"finish_reason", FinishName(summary.finish_reason())},
                          {"mode", ModeName(summary.mode())},
                          {"prompt_tokens", summary.usage().prompt_tokens()},
                          {"completion_tokens", summary.usage().completion_tokens()},
                          {"ttft_seconds", summary.timing().time_to_first_token_seconds()},
                          {"e2e_seconds", summary.timing().e2e_seconds()}};
    if (summary.mode() == v1::DECODE_MODE_SELF_SPECULATIVE)
      out["speculation"] = {{"rounds", s.rounds()},
                            {"drafted", s.drafted()},
                            {"accepted", s.accepted()},
                            {"acceptance_rate", s.acceptance_rate()},
                            {"tokens_per_round", s.tokens_per_round()},
                            {"accepted_per_position", std::vector<int64_t>(s.accepted_per_position().begin(), s.accepted_per_position().end())},
                            {"autoregressive_steps", s.autoregressive_steps()},
                            {"exit_layer", summary.exit_layer()},
                            {"speculations", summary.speculations()},
                            {"predicted_speedup", summary.predicted_speedup()}};
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return absl::OkStatus();
  }
  const double e2e = summary.timing().e2e_seconds();
  const int n = summary.usage().completion_tokens();
  std::fprintf(stderr, "[%s] %d prompt tokens, %d generated (%s), time to first token %.3f s, %.1f tokens/s",
               ModeName(summary.mode()), summary.usage().prompt_tokens(), n, FinishName(summary.finish_reason()),
               summary.timing().time_to_first_token_seconds(), e2e > 0 ? n / e2e : 0.0);
  if (summary.mode() == v1::DECODE_MODE_SELF_SPECULATIVE)
    std::fprintf(stderr, "; exit layer %d, d=%d, %lld rounds (%lld steps autoregressive), %lld/%lld drafts accepted "
                 "(%.1f%%), %.2f tokens/round",
                 summary.exit_layer(), summary.speculations(), static_cast<long long>(s.rounds()),
                 static_cast<long long>(s.autoregressive_steps()), static_cast<long long>(s.accepted()),
                 static_cast<long long>(s.drafted()), 100 * s.acceptance_rate(), s.tokens_per_round());
  std::fprintf(stderr, "\n");
  return absl::OkStatus();
}

}  // namespace

int RunClient(int argc, char** argv) {
  auto flags = Flags::Parse(argc, argv, 2,
                            {"server", "prompt", "prompt-ids", "max-tokens", "temperature", "top-k", "top-p", "seed", "mode",
                             "exit-layer", "speculations", "auth-token", "tls-ca", "timeout"},
                            {"json", "ignore-eos"}, {"stop"});
  if (!flags.ok()) return Fail("client", flags.status());
  absl::Status s = Client(*flags);
  return s.ok() ? 0 : Fail("client", s);
}

}  // namespace layerskip::cli
