// Automatic exit layer in the service (auto_exit_layer, HTTP "exit_layer": "auto", --default-exit-layer
// auto): the engine loop's policy picks E and d per batch. A real layerskip-coordinator on the demo model
// (whose early exits predict well) with the documented default cost model (--calibration off: no start-up
// measurement, and it predicts that drafting pays, so rounds run at the chosen E until the measured step
// times say otherwise), real gRPC and HTTP clients, the real `layerskip client`; greedy output equals
// `layerskip generate`'s autoregressive greedy output.
#include <gtest/gtest.h>

#include <cstdio>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/service/coordinator_process.h"

namespace layerskip::testing {
namespace {

const std::string kDemo = std::string(LAYERSKIP_SOURCE_DIR) + "/models/layerskip-demo";
constexpr int kLayers = 12;  // models/layerskip-demo

struct Streamed {
  grpc::Status status;
  std::vector<int> ids;
  v1::GenerationSummary summary;
};

Streamed Generate(v1::Inference::Stub& stub, const v1::GenerateRequest& q) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  Streamed out;
  auto reader = stub.Generate(&ctx, q);
  v1::GenerateResponse m;
  while (reader->Read(&m)) {
    out.ids.insert(out.ids.end(), m.token_ids().begin(), m.token_ids().end());
    if (m.has_summary()) out.summary = m.summary();
  }
  out.status = reader->Finish();
  return out;
}

// Autoregressive greedy ids of `layerskip generate` for the prompt: the reference.
std::vector<int> ReferenceIds(const std::string& prompt, int max_tokens) {
  const std::string out = CliGenerateJson(kDemo, "--prompt '" + prompt + "' --max-tokens " + std::to_string(max_tokens));
  return nlohmann::json::parse(out)["ids"].get<std::vector<int>>();
}

// The summary names what was used: an E in [1, L) for the rounds, or (E = 0) only autoregressive steps.
void ExpectAutoSummary(const v1::GenerationSummary& s, const std::string& what) {
  EXPECT_EQ(s.mode(), v1::DECODE_MODE_SELF_SPECULATIVE) << what;
  EXPECT_GT(s.speculation().rounds() + s.speculation().autoregressive_steps(), 0) << what;
  if (s.exit_layer() == 0) {
    EXPECT_EQ(s.speculation().rounds(), 0) << what;
    EXPECT_GT(s.speculation().autoregressive_steps(), 0) << what;
  } else {
    EXPECT_GE(s.exit_layer(), 1) << what;
    EXPECT_LT(s.exit_layer(), kLayers) << what;
    EXPECT_GT(s.speculation().rounds(), 0) << what;
  }
  EXPECT_GT(s.predicted_speedup(), 0.0) << what;
}

class AutoExitLayerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new CoordinatorProcess({"--model", kDemo, "--threads", "2", "--max-batch-size", "8", "--http-port", "0",
                                      "--default-mode", "self-speculative", "--default-exit-layer", "auto",
                                      "--default-speculations", "auto", "--calibration", "off"});
    ASSERT_TRUE(server_->ok()) << server_->stderr_text();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static CoordinatorProcess* server_;
};
CoordinatorProcess* AutoExitLayerTest::server_ = nullptr;

// Several concurrent streams, E and d left to the server (its default, the request's auto_exit_layer, a
// fixed d with auto E): each stream's ids equal autoregressive greedy decoding token for token.
TEST_F(AutoExitLayerTest, ConcurrentStreamsEqualAutoregressiveGreedy) {
  struct Case {
    std::string prompt;
    int how;  // 0: server defaults; 1: auto_exit_layer + auto_speculations; 2: auto_exit_layer + d = 3
  };
  const std::vector<Case> cases = {{"def main():", 0}, {"import os", 1}, {"class Node:", 2},
                                   {"for i in range(", 0}, {"def add(a, b):", 1}, {"x = [", 2}};
  const int kTokens = 32;
  std::vector<Streamed> got(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i)
    threads.emplace_back([&, i] {
      v1::GenerateRequest q;
      q.set_prompt(cases[i].prompt);
      q.set_max_tokens(kTokens);
      if (cases[i].how >= 1) q.set_auto_exit_layer(true);
      if (cases[i].how == 1) q.set_auto_speculations(true);
      if (cases[i].how == 2) q.set_speculations(3);
      got[i] = Generate(*server_->Stub(), q);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message();
    EXPECT_EQ(got[i].ids, ReferenceIds(cases[i].prompt, kTokens)) << "case " << i << ": " << cases[i].prompt;
    ExpectAutoSummary(got[i].summary, cases[i].prompt);
    if (cases[i].how == 2 && got[i].summary.exit_layer() > 0) EXPECT_EQ(got[i].summary.speculations(), 3) << i;
  }
  // The gauges show the last batch's choice: an E in [1, L).
  const double e = server_->Metric("layerskip:spec_decode_exit_layer{model_name=\"layerskip-demo\"}");
  EXPECT_GE(e, 1);
  EXPECT_LT(e, kLayers);
  EXPECT_GE(server_->Metric("layerskip:spec_decode_draft_length{model_name=\"layerskip-demo\"}"), 0);
  // The policy timed its decoding steps (live timing, as in `layerskip generate`): at least one running
  // measured / predicted ratio has moved from its initial 1.
  const double round = server_->Metric("layerskip:spec_decode_round_time_ratio{model_name=\"layerskip-demo\"}");
  const double ar = server_->Metric("layerskip:spec_decode_autoregressive_time_ratio{model_name=\"layerskip-demo\"}");
  EXPECT_GT(round, 0);
  EXPECT_GT(ar, 0);
  EXPECT_TRUE(round != 1.0 || ar != 1.0) << round << " " << ar;
}

// A request's own exit layer still wins over the automatic default; asking for both, or auto E for early
// exit, is refused naming the field.
TEST_F(AutoExitLayerTest, ExplicitExitLayerAndBadCombinations) {
  v1::GenerateRequest q;
  q.set_prompt("def main():");
  q.set_max_tokens(12);
  q.set_exit_layer(4);
  q.set_speculations(2);
  const Streamed fixed = Generate(*server_->Stub(), q);
  ASSERT_TRUE(fixed.status.ok()) << fixed.status.error_message();
  EXPECT_EQ(fixed.summary.exit_layer(), 4);
  EXPECT_EQ(fixed.ids, ReferenceIds("def main():", 12));

  q.set_auto_exit_layer(true);  // and exit_layer 4
  Streamed both = Generate(*server_->Stub(), q);
  EXPECT_EQ(both.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(both.status.error_message().find("auto_exit_layer"), std::string::npos) << both.status.error_message();

  v1::GenerateRequest early;
  early.set_prompt("def main():");
  early.set_mode(v1::DECODE_MODE_EARLY_EXIT);
  early.set_auto_exit_layer(true);
  Streamed ee = Generate(*server_->Stub(), early);
  EXPECT_EQ(ee.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(ee.status.error_message().find("auto_exit_layer"), std::string::npos) << ee.status.error_message();
}

// The OpenAI API's extra "exit_layer": "auto" (with "speculations": "auto"): the same greedy text, and its
// layerskip summary reports the E used; any other string is a 400 naming exit_layer.
TEST_F(AutoExitLayerTest, OpenAiExitLayerAuto) {
  const std::string body = R"({"prompt": "def main():", "max_tokens": 24, "temperature": 0,
                               "mode": "self-speculative", "exit_layer": "auto", "speculations": "auto"})";
  auto [code, text] = HttpRequest(server_->http_port(), "POST", "/v1/completions", body);
  ASSERT_EQ(code, 200) << text;
  const nlohmann::json j = nlohmann::json::parse(text);
  const nlohmann::json want = nlohmann::json::parse(CliGenerateJson(kDemo, "--prompt 'def main():' --max-tokens 24"));
  EXPECT_EQ(j["choices"][0]["text"], want["text"]);
  const nlohmann::json& ls = j["layerskip"];
  const int e = ls["exit_layer"].get<int>();
  EXPECT_TRUE((e >= 1 && e < kLayers) || (e == 0 && ls["speculation"]["autoregressive_steps"].get<int>() > 0)) << ls.dump();
  EXPECT_TRUE(ls.contains("predicted_speedup")) << ls.dump();

  auto [bad, bad_text] = HttpRequest(server_->http_port(), "POST", "/v1/completions",
                                     R"({"prompt": "x", "max_tokens": 2, "exit_layer": "best"})");
  EXPECT_EQ(bad, 400) << bad_text;
  EXPECT_NE(bad_text.find("exit_layer"), std::string::npos) << bad_text;
}

// `layerskip client --exit-layer auto --speculations auto --json` against the server: the same ids, and
// the E it reports is in [1, L) (or 0 with only autoregressive steps).
TEST_F(AutoExitLayerTest, ClientExitLayerAuto) {
  const std::string cmd = std::string(LAYERSKIP_BIN_DIR) + "/layerskip client --server " + server_->address() +
                          " --prompt 'import os' --max-tokens 20 --mode self-speculative --exit-layer auto"
                          " --speculations auto --json 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ids"].get<std::vector<int>>(), ReferenceIds("import os", 20));
  const int e = j["speculation"]["exit_layer"].get<int>();
  EXPECT_TRUE((e >= 1 && e < kLayers) || (e == 0 && j["speculation"]["autoregressive_steps"].get<int>() > 0)) << out;
}

}  // namespace
}  // namespace layerskip::testing
