// The coordinator as a client sees it: a real layerskip-coordinator process on loopback, real gRPC stubs.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <cstdio>
#include <random>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/service/coordinator_process.h"

namespace layerskip::testing {
namespace {

const std::string kModel = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";
const std::string kRunning = "layerskip:num_requests_running{model_name=\"tiny-random\"}";
const std::string kWaiting = "layerskip:num_requests_waiting{model_name=\"tiny-random\"}";
const std::string kCancelled = "layerskip:request_cancelled_total{model_name=\"tiny-random\"}";
const std::string kKvUsage = "layerskip:kv_cache_usage_perc{model_name=\"tiny-random\"}";

struct Streamed {
  grpc::Status status;
  std::vector<int> ids;
  std::string text;
  v1::GenerationSummary summary;
  int messages = 0;
};

Streamed Generate(v1::Inference::Stub& stub, const v1::GenerateRequest& q, double deadline_s = 60,
                  const std::string& token = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(deadline_s)));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  Streamed out;
  auto reader = stub.Generate(&ctx, q);
  v1::GenerateResponse m;
  while (reader->Read(&m)) {
    ++out.messages;
    out.ids.insert(out.ids.end(), m.token_ids().begin(), m.token_ids().end());
    out.text += m.text();
    if (m.has_summary()) out.summary = m.summary();
  }
  out.status = reader->Finish();
  return out;
}

// `layerskip generate --json` for the same request: the reference the service must match.
nlohmann::json CliGenerate(const std::string& args) { return nlohmann::json::parse(CliGenerateJson(kModel, args)); }

v1::GenerateRequest TextRequest(const std::string& prompt, int max_tokens) {
  v1::GenerateRequest q;
  q.set_prompt(prompt);
  q.set_max_tokens(max_tokens);
  return q;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new CoordinatorProcess({"--model", kModel, "--threads", "2", "--max-batch-size", "32", "--max-queue", "64"});
    ASSERT_TRUE(server_->ok()) << server_->stderr_text();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static CoordinatorProcess* server_;
};
CoordinatorProcess* CoordinatorTest::server_ = nullptr;

TEST_F(CoordinatorTest, StreamedGreedyOutputEqualsGenerate) {
  auto stub = server_->Stub();
  for (const std::string mode : {"autoregressive", "self-speculative"}) {
    for (const std::string prompt : {"def main():", "The quick brown fox"}) {
      v1::GenerateRequest q = TextRequest(prompt, 40);
      std::string args = "--prompt '" + prompt + "' --max-tokens 40";
      if (mode == "self-speculative") {
        q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
        q.set_exit_layer(2);
        q.set_speculations(4);
        args += " --mode self-speculative --exit-layer 2 --speculations 4";
      }
      const nlohmann::json want = CliGenerate(args);
      Streamed got = Generate(*stub, q);
      ASSERT_TRUE(got.status.ok()) << got.status.error_message();
      EXPECT_EQ(got.ids, want["ids"].get<std::vector<int>>()) << mode << " " << prompt;
      EXPECT_EQ(got.text, want["text"].get<std::string>()) << mode << " " << prompt;
      EXPECT_GT(got.messages, 1) << "the output should arrive as a stream";
      EXPECT_EQ(got.summary.usage().completion_tokens(), static_cast<int>(got.ids.size()));
      EXPECT_EQ(got.summary.finish_reason(), want["finish_reason"] == "length" ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP);
      if (mode == "self-speculative") {
        EXPECT_EQ(got.summary.speculation().rounds(), want["stats"]["speculation"]["rounds"].get<int64_t>());
        EXPECT_EQ(got.summary.speculation().accepted(), want["stats"]["speculation"]["accepted"].get<int64_t>());
      }
    }
  }
}

TEST_F(CoordinatorTest, StopSequenceEndsTextBeforeIt) {
  auto stub = server_->Stub();
  // Find a stop string that occurs in the greedy text, then ask again with it.
  Streamed full = Generate(*stub, TextRequest("def main():", 40));
  ASSERT_TRUE(full.status.ok());
  ASSERT_GT(full.text.size(), 12u);
  std::string stop;  // three printable ASCII characters from the middle of the text
  for (size_t i = 4; i + 3 <= full.text.size() && stop.empty(); ++i) {
    const std::string c = full.text.substr(i, 3);
    if (std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 0x21 && ch < 0x7f; })) stop = c;
  }
  ASSERT_FALSE(stop.empty()) << full.text;
  v1::GenerateRequest q = TextRequest("def main():", 40);
  q.add_stop(stop);
  Streamed got = Generate(*stub, q);
  ASSERT_TRUE(got.status.ok());
  const nlohmann::json want = CliGenerate("--prompt 'def main():' --max-tokens 40 --stop '" + stop + "'");
  EXPECT_EQ(got.text, want["text"].get<std::string>());
  EXPECT_EQ(got.ids, want["ids"].get<std::vector<int>>());
  EXPECT_EQ(got.text.find(stop), std::string::npos);
  EXPECT_EQ(got.summary.finish_reason(), v1::FINISH_REASON_STOP);
}

TEST_F(CoordinatorTest, ThirtyTwoConcurrentStreamsAreAllCorrect) {
  struct Case {
    v1::GenerateRequest q;
    std::string args;
  };
  std::vector<Case> cases;
  std::mt19937 rng(5);
  for (int i = 0; i < 32; ++i) {
    Case c;
    std::string ids;
    const int len = 1 + static_cast<int>(rng() % 20);
    for (int j = 0; j < len; ++j) {
      const int id = static_cast<int>(rng() % 990);
      c.q.add_prompt_ids(id);
      ids += (j ? "," : "") + std::to_string(id);
    }
    const int max_tokens = 8 + static_cast<int>(rng() % 40);
    c.q.set_max_tokens(max_tokens);
    c.args = "--prompt-ids " + ids + " --max-tokens " + std::to_string(max_tokens);
    switch (i % 4) {
      case 0: break;  // greedy autoregressive
      case 1: {       // greedy self-speculative, various E and d
        const int e = 1 + i % 3, d = 1 + i % 5;
        c.q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
        c.q.set_exit_layer(e);
        c.q.set_speculations(d);
        c.args += " --mode self-speculative --exit-layer " + std::to_string(e) + " --speculations " + std::to_string(d);
        break;
      }
      case 2:  // greedy adaptive
        c.q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
        c.q.set_exit_layer(2);
        c.q.set_auto_speculations(true);
        c.args += " --mode self-speculative --exit-layer 2 --speculations auto";
        break;
      case 3:  // seeded sampling, autoregressive (speculation policy cannot change its random stream)
        c.q.set_temperature(0.8f);
        c.q.set_top_k(40);
        c.q.set_top_p(0.9f);
        c.q.set_seed(100 + i);
        c.args += " --temperature 0.8 --top-k 40 --top-p 0.9 --seed " + std::to_string(100 + i);
        break;
    }
    cases.push_back(c);
  }
  std::vector<Streamed> got(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i)
    threads.emplace_back([&, i] {
      auto stub = server_->Stub();
      got[i] = Generate(*stub, cases[i].q);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message();
    const nlohmann::json want = CliGenerate(cases[i].args);
    EXPECT_EQ(got[i].ids, want["ids"].get<std::vector<int>>()) << "case " << i << ": " << cases[i].args;
  }
  EXPECT_TRUE(WaitFor([&] { return server_->Metric(kRunning) == 0; }, 10));
}

TEST_F(CoordinatorTest, CancelMidStreamFreesTheSequence) {
  const double cancelled_before = server_->Metric(kCancelled);
  auto stub = server_->Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(2000);
  q.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, q);
  v1::GenerateResponse m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_TRUE(WaitFor([&] { return server_->Metric(kRunning) == 1; }, 5));
  EXPECT_GT(server_->Metric(kKvUsage), 0);
  ctx.TryCancel();
  while (reader->Read(&m)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] { return server_->Metric(kRunning) == 0; }, 5));
  EXPECT_TRUE(WaitFor([&] { return server_->Metric(kCancelled) == cancelled_before + 1; }, 5));
  EXPECT_EQ(server_->Metric(kKvUsage), 0);
}

TEST_F(CoordinatorTest, ExpiredDeadline) {
  auto stub = server_->Stub();
  v1::GenerateRequest q;
  q.add_prompt_ids(7);
  q.set_max_tokens(2000);
  q.set_ignore_eos(true);
  Streamed got = Generate(*stub, q, /*deadline_s=*/0.2);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitFor([&] { return server_->Metric(kRunning) == 0; }, 5));
}

TEST_F(CoordinatorTest, EveryInvalidFieldIsNamed) {
  auto stub = server_->Stub();
  struct Bad {
    std::string field;
    std::function<void(v1::GenerateRequest&)> set;
  };
  const std::vector<Bad> bad = {
      {"prompt", [](auto& q) { q.clear_prompt_ids(); }},
      {"prompt_ids", [](auto& q) { q.add_prompt_ids(1000); }},
      {"prompt_ids", [](auto& q) { q.add_prompt_ids(-1); }},
      {"max_tokens", [](auto& q) { q.set_max_tokens(0); }},
      {"max_tokens", [](auto& q) { q.set_max_tokens(-3); }},
      {"max_tokens", [](auto& q) { q.set_max_tokens(5000); }},
      {"temperature", [](auto& q) { q.set_temperature(-0.5f); }},
      {"top_p", [](auto& q) { q.set_top_p(0.0f); }},
      {"top_p", [](auto& q) { q.set_top_p(1.5f); }},
      {"top_k", [](auto& q) { q.set_top_k(-1); }},
      {"exit_layer", [](auto& q) { q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE); q.set_exit_layer(4); }},
      {"exit_layer", [](auto& q) { q.set_mode(v1::DECODE_MODE_EARLY_EXIT); q.set_exit_layer(0); }},
      {"mode", [](auto& q) { q.set_mode(static_cast<v1::DecodeMode>(9)); }},
      {"speculations", [](auto& q) { q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE); q.set_speculations(65); }},
      {"stop", [](auto& q) { q.add_stop(""); }},
  };
  for (const Bad& b : bad) {
    v1::GenerateRequest q;
    q.add_prompt_ids(5);
    q.set_max_tokens(4);
    b.set(q);
    Streamed got = Generate(*stub, q);
    EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.field;
    EXPECT_EQ(got.status.error_message().rfind(b.field + ":", 0), 0u) << got.status.error_message();
    // The unary call validates the same way.
    grpc::ClientContext ctx;
    v1::CompleteResponse r;
    EXPECT_EQ(stub->Complete(&ctx, q, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.field;
  }
  v1::GenerateRequest empty_text;
  empty_text.set_max_tokens(3);
  EXPECT_EQ(Generate(*stub, empty_text).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Still serving after all that.
  EXPECT_EQ(server_->HealthStatus(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(CoordinatorTest, CompleteTokenizeModelInfoHealthAndMetrics) {
  auto stub = server_->Stub();
  v1::GenerateRequest spec_q = TextRequest("def main():", 16);  // so the speculation series exist
  spec_q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
  spec_q.set_exit_layer(1);
  ASSERT_TRUE(Generate(*stub, spec_q).status.ok());
  grpc::ClientContext c1;
  v1::CompleteResponse r;
  ASSERT_TRUE(stub->Complete(&c1, TextRequest("def main():", 24), &r).ok());
  const nlohmann::json want = CliGenerate("--prompt 'def main():' --max-tokens 24");
  EXPECT_EQ(std::vector<int>(r.token_ids().begin(), r.token_ids().end()), want["ids"].get<std::vector<int>>());
  EXPECT_EQ(r.text(), want["text"].get<std::string>());

  grpc::ClientContext c2;
  v1::TokenizeRequest tq;
  tq.set_text("def main():");
  v1::TokenizeResponse tr;
  ASSERT_TRUE(stub->Tokenize(&c2, tq, &tr).ok());
  EXPECT_EQ(std::vector<int>(tr.ids().begin(), tr.ids().end()), want["prompt_ids"].get<std::vector<int>>());

  grpc::ClientContext c3;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&c3, {}, &info).ok());
  EXPECT_EQ(info.num_layers(), 4);
  EXPECT_EQ(info.vocab_size(), 1000);
  EXPECT_EQ(info.model_name(), "tiny-random");
  // One path, or prompt/generated: amx for the prompts of this small bf16 model on an AMX host.
  EXPECT_TRUE(info.cpu_kernels() == "avx2" || info.cpu_kernels() == "avx512" || info.cpu_kernels() == "avx512-bf16" ||
              info.cpu_kernels() == "amx/avx512-bf16")
      << info.cpu_kernels();
  EXPECT_EQ(info.weights(), "bf16");

  EXPECT_EQ(server_->HealthStatus(), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(server_->HealthStatus("layerskip.v1.Inference"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(server_->HttpGet("/health").first, 200);
  const std::string metrics = server_->HttpGet("/metrics").second;
  for (const char* name :
       {"time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
        "request_queue_time_seconds", "num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
        "prompt_tokens_total", "generation_tokens_total", "spec_decode_num_drafts", "spec_decode_num_draft_tokens",
        "spec_decode_num_accepted_tokens", "spec_decode_num_accepted_tokens_per_pos"})
    EXPECT_TRUE(metrics.find(std::string("layerskip:") + name + "{model_name=\"tiny-random\"") != std::string::npos ||
                metrics.find(std::string("layerskip:") + name + "_count{model_name=\"tiny-random\"") != std::string::npos)
        << name;
  EXPECT_NE(metrics.find("spec_decode_num_accepted_tokens_per_pos{model_name=\"tiny-random\",position=\"0\"}"), std::string::npos);
  EXPECT_EQ(server_->HttpGet("/nope").first, 404);
}

// auto_speculations: the server's cost-model policy picks d per batch (or autoregressive steps); greedy output
// is the autoregressive one, the summary says what was used, the gauges show the last choice.
TEST_F(CoordinatorTest, AutoSpeculationsReportTheChoice) {
  auto stub = server_->Stub();
  v1::GenerateRequest q = TextRequest("class A:", 24);
  q.set_mode(v1::DECODE_MODE_SELF_SPECULATIVE);
  q.set_exit_layer(2);
  q.set_auto_speculations(true);
  const Streamed got = Generate(*stub, q);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.ids, CliGenerate("--prompt 'class A:' --max-tokens 24")["ids"].get<std::vector<int>>());
  const v1::GenerationSummary& s = got.summary;
  EXPECT_EQ(s.exit_layer(), 2);
  EXPECT_GE(s.speculations(), 0);
  EXPECT_LE(s.speculations(), 8);
  EXPECT_GT(s.predicted_speedup(), 0.0);
  // Every step was either a round or an autoregressive step the policy chose.
  EXPECT_GT(s.speculation().rounds() + s.speculation().autoregressive_steps(), 0);
  if (s.speculations() == 0) EXPECT_GT(s.speculation().autoregressive_steps(), 0);
  const std::string metrics = server_->HttpGet("/metrics").second;
  for (const char* name : {"spec_decode_draft_length", "spec_decode_exit_layer", "spec_decode_predicted_speedup"})
    EXPECT_NE(metrics.find(std::string("layerskip:") + name + "{model_name=\"tiny-random\"}"), std::string::npos) << name;
}

// One long stream holding the only slot; one waiting; the next is refused.
TEST(CoordinatorQueueTest, FullQueueIsResourceExhausted) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--max-batch-size", "1", "--num-slots", "1",
                             "--max-queue", "1"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(2000);
  q.set_ignore_eos(true);
  grpc::ClientContext c1, c2;
  auto r1 = stub->Generate(&c1, q);
  v1::GenerateResponse m;
  ASSERT_TRUE(r1->Read(&m));
  auto r2 = stub->Generate(&c2, q);
  ASSERT_TRUE(WaitFor([&] { return server.Metric(kWaiting) == 1; }, 5));
  Streamed third = Generate(*stub, q);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << third.status.error_message();
  // Too large for the whole cache: refused at once rather than queued forever.
  c1.TryCancel();
  c2.TryCancel();
  while (r1->Read(&m)) {
  }
  while (r2->Read(&m)) {
  }
  r1->Finish();
  r2->Finish();
  EXPECT_TRUE(WaitFor([&] { return server.Metric(kRunning) == 0 && server.Metric(kWaiting) == 0; }, 5));
}

// --weights int8: GetModelInfo says so, and the service's greedy ids are the CLI's with int8 weights.
TEST(CoordinatorInt8Test, Int8WeightsServeLikeTheCli) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--weights", "int8"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  grpc::ClientContext c;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&c, {}, &info).ok());
  EXPECT_EQ(info.weights(), "int8");
  EXPECT_EQ(info.dtype(), "bf16");
  Streamed got = Generate(*stub, TextRequest("def main():", 16));
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.ids, CliGenerate("--prompt 'def main():' --max-tokens 16 --weights int8")["ids"].get<std::vector<int>>());
}

TEST(CoordinatorQueueTest, KvBudgetQueuesAndRejects) {
  // 2 slots but KV positions for one 100-position request at a time.
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--num-slots", "2", "--kv-cache-positions", "150"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  v1::GenerateRequest big;
  big.add_prompt_ids(5);
  big.set_max_tokens(200);
  EXPECT_EQ(Generate(*stub, big).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(99);
  q.set_ignore_eos(true);
  std::vector<Streamed> got(3);
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) ts.emplace_back([&, i] { got[i] = Generate(*server.Stub(), q); });
  for (auto& t : ts) t.join();
  for (const Streamed& g : got) {
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_EQ(g.ids, got[0].ids);
    EXPECT_EQ(g.ids.size(), 99u);
  }
}

TEST(CoordinatorLifecycleTest, SigtermDrainsInFlightAndExitsZero) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--drain-timeout", "30"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest q;
  q.add_prompt_ids(9);
  q.set_max_tokens(300);
  q.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, q);
  v1::GenerateResponse m;
  ASSERT_TRUE(reader->Read(&m));
  size_t n = static_cast<size_t>(m.token_ids_size());
  server.Signal(SIGTERM);
  v1::GenerationSummary summary;
  while (reader->Read(&m)) {
    n += static_cast<size_t>(m.token_ids_size());
    if (m.has_summary()) summary = m.summary();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(n, 300u);
  EXPECT_EQ(summary.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(server.Wait(30), 0) << server.stderr_text();
}

TEST(CoordinatorLifecycleTest, SigtermCancelsWhatOutlivesTheDrainTimeout) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--drain-timeout", "0.2"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest q;
  q.add_prompt_ids(9);
  q.set_max_tokens(2000);
  q.set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, q);
  v1::GenerateResponse m;
  ASSERT_TRUE(reader->Read(&m));
  server.Signal(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() != grpc::health::v1::HealthCheckResponse::SERVING; }, 5));
  v1::GenerationSummary summary;
  while (reader->Read(&m))
    if (m.has_summary()) summary = m.summary();
  reader->Finish();
  EXPECT_EQ(summary.finish_reason(), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(server.Wait(30), 0) << server.stderr_text();
}

TEST(CoordinatorLifecycleTest, FatalEngineErrorReportsNotServingAndExitsNonZero) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--fail-after-steps", "3", "--fatal-linger", "6"},
                            "layerskip-coordinator-failing");
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  v1::GenerateRequest q;
  q.add_prompt_ids(9);
  q.set_max_tokens(50);
  Streamed got = Generate(*stub, q);
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(server.HealthStatus(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(server.HttpGet("/health").first, 503);
  const int rc = server.Wait(30);
  EXPECT_NE(rc, 0);
  EXPECT_LT(rc, 128) << "a clean non-zero exit, not a crash";
}

TEST(CoordinatorAuthTest, WrongOrMissingTokenIsUnauthenticated) {
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--auth-token", "s3cret"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  auto stub = server.Stub();
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(3);
  EXPECT_EQ(Generate(*stub, q).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate(*stub, q, 60, "wrong").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Generate(*stub, q, 60, "s3cret").status.ok());
  for (const std::string token : {"", "wrong"}) {
    grpc::ClientContext c;
    if (!token.empty()) c.AddMetadata("authorization", "Bearer " + token);
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&c, {}, &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext c2;
    if (!token.empty()) c2.AddMetadata("authorization", "Bearer " + token);
    v1::CompleteResponse r;
    EXPECT_EQ(stub->Complete(&c2, q, &r).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Health stays open for probes.
  EXPECT_EQ(server.HealthStatus(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// TLS: a client that trusts the server's certificate streams; a plaintext client gets nothing.
TEST(CoordinatorAuthTest, TlsWithSelfSignedCertificate) {
  char dir_template[] = "/tmp/layerskip_tls_XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + key + " -out " + cert +
                          " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--tls-cert", cert, "--tls-key", key});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  std::ifstream in(cert);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  auto secure = v1::Inference::NewStub(grpc::CreateChannel(server.address(), grpc::SslCredentials(ssl)));
  v1::GenerateRequest q;
  q.add_prompt_ids(5);
  q.set_max_tokens(3);
  Streamed ok = Generate(*secure, q, 30);
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.ids.size(), 3u);
  EXPECT_FALSE(Generate(*server.Stub(), q, 5).status.ok());  // plaintext
  std::system(("rm -rf " + dir).c_str());
}

TEST(CoordinatorFlagsTest, BadFlagsAndModelFailWithOneLine) {
  CoordinatorProcess missing({"--model", "/nonexistent/model"});
  EXPECT_FALSE(missing.ok());
  EXPECT_EQ(missing.Wait(10), 1);
  CoordinatorProcess bad_mode({"--model", kModel, "--default-mode", "fast"});
  EXPECT_FALSE(bad_mode.ok());
  EXPECT_EQ(bad_mode.Wait(10), 1);
  EXPECT_NE(bad_mode.stderr_text().find("--default-mode"), std::string::npos);
}

}  // namespace
}  // namespace layerskip::testing
