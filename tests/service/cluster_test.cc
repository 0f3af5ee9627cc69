// The coordinator with remote pipeline stages (--workers): real layerskip-worker processes and a real
// layerskip-coordinator on loopback, a real gRPC client. Greedy output equals `layerskip generate`; a
// worker killed mid-stream ends the streams with UNAVAILABLE and health NOT_SERVING until it is back; a
// frozen worker (SIGSTOP) is noticed by its missed heartbeats; workers may start after the coordinator.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/pipeline/worker_process.h"
#include "tests/service/coordinator_process.h"

namespace layerskip::testing {
namespace {

const std::string kModel = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";
constexpr int kServing = 1;  // grpc.health.v1 SERVING
constexpr int kNotServing = 2;

struct Streamed {
  grpc::Status status;
  std::vector<int> ids;
  v1::GenerationSummary summary;
};

// Streams a request; `after_first` runs once the first message has arrived.
Streamed Generate(v1::Inference::Stub& stub, const v1::GenerateRequest& q,
                  const std::function<void()>& after_first = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  Streamed out;
  auto reader = stub.Generate(&ctx, q);
  v1::GenerateResponse m;
  bool first = true;
  while (reader->Read(&m)) {
    out.ids.insert(out.ids.end(), m.token_ids().begin(), m.token_ids().end());
    if (m.has_summary()) out.summary = m.summary();
    if (first && after_first) after_first();
    first = false;
  }
  out.status = reader->Finish();
  return out;
}

std::vector<int> CliIds(const std::string& args) {
  return nlohmann::json::parse(CliGenerateJson(kModel, args))["ids"].get<std::vector<int>>();
}

v1::GenerateRequest Request(const std::string& prompt, int max_tokens, v1::DecodeMode mode, int d) {
  v1::GenerateRequest q;
  q.set_prompt(prompt);
  q.set_max_tokens(max_tokens);
  q.set_mode(mode);
  q.set_exit_layer(2);
  if (d < 0) q.set_auto_speculations(true);
  else q.set_speculations(d);
  return q;
}

// A loopback port in [20000, 32000) that nothing listens on now (ephemeral ports start at 32768).
int FreeLowPort() {
  static std::mt19937 rng(static_cast<unsigned>(::getpid()));
  for (int tries = 0; tries < 1000; ++tries) {
    const int port = 20000 + static_cast<int>(rng() % 12000);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (free) return port;
  }
  return 0;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("LAYERSKIP_CLUSTER_TOKEN", "cluster-test-token", 1); }
  std::vector<std::unique_ptr<WorkerProcess>> StartWorkers(int n) {
    std::vector<std::unique_ptr<WorkerProcess>> w;
    for (int i = 0; i < n; ++i) {
      w.push_back(std::make_unique<WorkerProcess>());
      EXPECT_TRUE(w.back()->Start("cluster-test-token"));
    }
    return w;
  }
  static std::string Endpoints(const std::vector<std::unique_ptr<WorkerProcess>>& w) {
    std::string s;
    for (const auto& x : w) s += (s.empty() ? "" : ",") + x->endpoint();
    return s;
  }
  // A coordinator over 2 workers (layers 0-1 | 2-3, E = 2) with the given --restore-timeout.
  static std::vector<std::string> TwoStages(const std::vector<std::unique_ptr<WorkerProcess>>& workers,
                                            const std::string& restore) {
    return {"--model", kModel, "--threads", "1", "--workers", Endpoints(workers), "--stages", "0-1,2-3",
            "--default-exit-layer", "2", "--restore-timeout", restore};
  }
  // The coordinator started and wired its workers (health SERVING; NOT_SERVING until then).
  static void ExpectServing(const CoordinatorProcess& server) {
    ASSERT_TRUE(server.ok()) << server.stderr_text();
    ASSERT_TRUE(WaitFor([&] { return server.HealthStatus() == kServing; }, 60)) << server.stderr_text();
  }
};

TEST_F(ClusterTest, ThreeStagesMatchTheSingleProcessEngineForConcurrentStreams) {
  auto workers = StartWorkers(3);
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--workers", Endpoints(workers), "--stages",
                             "0-1,2-2,3-3", "--default-exit-layer", "2"});
  ExpectServing(server);
  struct Case {
    std::string prompt;
    v1::DecodeMode mode;
    int d;
    std::string args;
  };
  const std::vector<Case> cases = {
      {"def main():", v1::DECODE_MODE_AUTOREGRESSIVE, 0, ""},
      {"import os", v1::DECODE_MODE_SELF_SPECULATIVE, 1, "--mode self-speculative --exit-layer 2 --speculations 1"},
      {"class A:", v1::DECODE_MODE_SELF_SPECULATIVE, 3, "--mode self-speculative --exit-layer 2 --speculations 3"},
      {"for i in", v1::DECODE_MODE_SELF_SPECULATIVE, -1, "--mode self-speculative --exit-layer 2 --speculations auto"},
      {"x = [", v1::DECODE_MODE_SELF_SPECULATIVE, 4, "--mode self-speculative --exit-layer 2 --speculations 4"},
      {"return", v1::DECODE_MODE_AUTOREGRESSIVE, 0, ""},
  };
  std::vector<Streamed> got(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i)
    threads.emplace_back([&, i] {
      auto stub = server.Stub();
      got[i] = Generate(*stub, Request(cases[i].prompt, 24, cases[i].mode, cases[i].d));
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message();
    EXPECT_EQ(got[i].ids, CliIds("--prompt '" + cases[i].prompt + "' --max-tokens 24 " + cases[i].args)) << "case " << i;
  }
}

// Automatic exit layer on a pipeline: stage 0 drafts, so the split fixes E; auto E (the server's default,
// or the request's) means the split's E = 1 here, never the default L / 2, and greedy output is still the
// autoregressive one.
TEST_F(ClusterTest, AutoExitLayerIsTheSplitExitLayer) {
  auto workers = StartWorkers(2);
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--workers", Endpoints(workers), "--stages", "0-0,1-3",
                             "--default-mode", "self-speculative", "--default-exit-layer", "auto",
                             "--default-speculations", "auto"});
  ExpectServing(server);
  const std::vector<std::string> prompts = {"def main():", "import os", "class A:"};
  std::vector<Streamed> got(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      v1::GenerateRequest q;
      q.set_prompt(prompts[i]);
      q.set_max_tokens(24);
      if (i >= 1) q.set_auto_exit_layer(true);
      if (i == 2) q.set_speculations(2);
      got[i] = Generate(*server.Stub(), q);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << i << ": " << got[i].status.error_message() << "\n" << server.stderr_text();
    EXPECT_EQ(got[i].ids, CliIds("--prompt '" + prompts[i] + "' --max-tokens 24")) << "case " << i;
    EXPECT_EQ(got[i].summary.exit_layer(), 1) << "case " << i;
  }
  const double e = server.Metric("layerskip:spec_decode_exit_layer{model_name=\"tiny-random\"}");
  EXPECT_EQ(e, 1.0);  // the policy ran for the auto-d requests
  // A pipeline's steps overlap, so the policy does not time them: the ratios stay at 1.
  EXPECT_EQ(server.Metric("layerskip:spec_decode_round_time_ratio{model_name=\"tiny-random\"}"), 1.0);
  EXPECT_EQ(server.Metric("layerskip:spec_decode_autoregressive_time_ratio{model_name=\"tiny-random\"}"), 1.0);
}

// --weights int8 reaches every worker (LoadShardRequest.weights): the pipeline's greedy ids, autoregressive and
// self-speculative, are the single-process engine's with int8 weights.
TEST_F(ClusterTest, Int8WeightsOnTheWorkersMatchTheCli) {
  auto workers = StartWorkers(2);
  std::vector<std::string> args = TwoStages(workers, "30");
  args.insert(args.end(), {"--weights", "int8"});
  CoordinatorProcess server(args);
  ExpectServing(server);
  Streamed ar = Generate(*server.Stub(), Request("def main():", 16, v1::DECODE_MODE_AUTOREGRESSIVE, 0));
  Streamed ss = Generate(*server.Stub(), Request("def main():", 16, v1::DECODE_MODE_SELF_SPECULATIVE, 2));
  ASSERT_TRUE(ar.status.ok()) << ar.status.error_message();
  ASSERT_TRUE(ss.status.ok()) << ss.status.error_message();
  const std::vector<int> want = CliIds("--prompt 'def main():' --max-tokens 16 --weights int8");
  EXPECT_EQ(ar.ids, want);
  EXPECT_EQ(ss.ids, want);
}

TEST_F(ClusterTest, WorkerKilledMidStreamThenRestored) {
  auto workers = StartWorkers(2);
  // --restore-timeout 0: streams in flight end at once when a stage is lost.
  CoordinatorProcess server(TwoStages(workers, "0"));
  ExpectServing(server);
  auto stub = server.Stub();
  const int port = workers[1]->port();
  // Kill stage 1 as soon as the first tokens stream: the stream ends with UNAVAILABLE, not a hang.
  Streamed cut = Generate(*stub, Request("def main():", 400, v1::DECODE_MODE_SELF_SPECULATIVE, 3),
                          [&] { workers[1]->Kill(); });
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_FALSE(cut.ids.empty());
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() == kNotServing; }, 10));
  EXPECT_EQ(server.HttpGet("/health").first == 200, false);
  // New requests are refused while the stage is down.
  EXPECT_EQ(Generate(*stub, Request("x", 4, v1::DECODE_MODE_AUTOREGRESSIVE, 0)).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The restarted worker gets its shard back; the coordinator serves again, with correct output.
  workers[1] = std::make_unique<WorkerProcess>();
  ASSERT_TRUE(workers[1]->Start("cluster-test-token", port));
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() == kServing; }, 20)) << server.stderr_text();
  Streamed after = Generate(*stub, Request("def main():", 24, v1::DECODE_MODE_SELF_SPECULATIVE, 3));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.ids, CliIds("--prompt 'def main():' --max-tokens 24 --mode self-speculative --exit-layer 2 --speculations 3"));
}

// With a restore timeout (the default), a stream whose stage dies waits; once the restarted worker has its
// shard back, the stream continues where it stopped (its cache re-prefilled) and its whole output equals
// the single-process engine's.
TEST_F(ClusterTest, StreamResumesWhenTheKilledWorkerIsRestored) {
  auto workers = StartWorkers(2);
  CoordinatorProcess server(TwoStages(workers, "30"));
  ExpectServing(server);
  auto stub = server.Stub();
  const int port = workers[1]->port();
  Streamed resumed;
  std::thread client([&] {
    resumed = Generate(*stub, Request("def main():", 400, v1::DECODE_MODE_SELF_SPECULATIVE, 3), [&] { workers[1]->Kill(); });
  });
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() == kNotServing; }, 10));
  EXPECT_EQ(Generate(*stub, Request("x", 4, v1::DECODE_MODE_AUTOREGRESSIVE, 0)).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  workers[1] = std::make_unique<WorkerProcess>();
  ASSERT_TRUE(workers[1]->Start("cluster-test-token", port));
  client.join();
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.error_message() << "\n" << server.stderr_text();
  EXPECT_EQ(resumed.ids, CliIds("--prompt 'def main():' --max-tokens 400 --mode self-speculative --exit-layer 2 --speculations 3"));
  EXPECT_EQ(server.HealthStatus(), kServing);
  EXPECT_NE(server.stderr_text().find("running requests wait up to 30 s"), std::string::npos) << server.stderr_text();
}

// A stage that does not come back within the restore timeout: the suspended stream ends with UNAVAILABLE.
TEST_F(ClusterTest, SuspendedStreamEndsAfterTheRestoreTimeout) {
  auto workers = StartWorkers(2);
  CoordinatorProcess server(TwoStages(workers, "1"));
  ExpectServing(server);
  auto stub = server.Stub();
  const auto t0 = std::chrono::steady_clock::now();
  Streamed cut = Generate(*stub, Request("def main():", 400, v1::DECODE_MODE_AUTOREGRESSIVE, 0), [&] { workers[1]->Kill(); });
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_NE(cut.status.error_message().find("not restored within 1 s"), std::string::npos) << cut.status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  EXPECT_FALSE(cut.ids.empty());
}

TEST_F(ClusterTest, UnreachableWorkerAtStartIsReported) {
  auto workers = StartWorkers(1);
  CoordinatorProcess server({"--model", kModel, "--workers", workers[0]->endpoint() + ",127.0.0.1:1", "--stages", "0-1,2-3",
                             "--workers-wait", "2"});
  // It serves NOT_SERVING while it waits, then gives up naming the worker that never answered.
  if (server.ok()) EXPECT_NE(server.HealthStatus(), kServing);
  EXPECT_EQ(server.Wait(60), 1);
  EXPECT_NE(server.stderr_text().find("127.0.0.1:1"), std::string::npos) << server.stderr_text();
  EXPECT_NE(server.stderr_text().find("--workers-wait"), std::string::npos) << server.stderr_text();
}

// Kubernetes starts pods in any order: the coordinator comes up first, NOT_SERVING (requests refused with
// UNAVAILABLE), and turns SERVING once its workers appear and are wired.
TEST_F(ClusterTest, WorkersStartingAfterTheCoordinatorAreWaitedFor) {
  // Two free ports below the ephemeral range, so that no process started meanwhile is given them.
  std::vector<int> ports = {FreeLowPort(), FreeLowPort()};
  const std::string endpoints = "127.0.0.1:" + std::to_string(ports[0]) + ",127.0.0.1:" + std::to_string(ports[1]);
  CoordinatorProcess server({"--model", kModel, "--threads", "1", "--workers", endpoints, "--stages", "0-1,2-3",
                             "--default-exit-layer", "2", "--workers-wait", "120"});
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  EXPECT_EQ(server.HealthStatus(), kNotServing);
  auto stub = server.Stub();
  EXPECT_EQ(Generate(*stub, Request("x", 4, v1::DECODE_MODE_AUTOREGRESSIVE, 0)).status.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a few failed attempts (with backoff)
  EXPECT_EQ(server.HealthStatus(), kNotServing);
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int port : ports) {
    workers.push_back(std::make_unique<WorkerProcess>());
    ASSERT_TRUE(workers.back()->Start("cluster-test-token", port));
  }
  ExpectServing(server);
  Streamed got = Generate(*stub, Request("def main():", 24, v1::DECODE_MODE_SELF_SPECULATIVE, 3));
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.ids, CliIds("--prompt 'def main():' --max-tokens 24 --mode self-speculative --exit-layer 2 --speculations 3"));
}

// A frozen worker (SIGSTOP) keeps its sockets open and answers nothing. Its missed heartbeats turn health
// NOT_SERVING within a few periods, the step in flight is cancelled and the stream is suspended; after
// SIGCONT the stage is restored and the stream ends with exactly the single-process engine's tokens.
TEST_F(ClusterTest, FrozenWorkerIsNoticedAndTheStreamResumesAfterItThaws) {
  auto workers = StartWorkers(2);
  auto args = TwoStages(workers, "120");
  for (const char* a : {"--heartbeat-interval", "0.2", "--heartbeat-misses", "3"}) args.push_back(a);
  CoordinatorProcess server(args);
  ExpectServing(server);
  auto stub = server.Stub();
  std::atomic<bool> frozen{false};
  Streamed resumed;
  std::thread client([&] {
    resumed = Generate(*stub, Request("def main():", 400, v1::DECODE_MODE_SELF_SPECULATIVE, 3), [&] {
      workers[1]->Freeze();
      frozen = true;
    });
  });
  ASSERT_TRUE(WaitFor([&] { return frozen.load(); }, 60));
  const auto t0 = std::chrono::steady_clock::now();
  // 3 missed beats 0.2 s apart; generous for a loaded machine, far below the 60 s RPC cap.
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() == kNotServing; }, 20)) << server.stderr_text();
  const double noticed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("frozen worker noticed after %.2f s\n", noticed);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(server.HealthStatus(), kNotServing);  // still frozen: still not serving
  workers[1]->Thaw();
  client.join();
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.error_message() << "\n" << server.stderr_text();
  EXPECT_EQ(resumed.ids, CliIds("--prompt 'def main():' --max-tokens 400 --mode self-speculative --exit-layer 2 --speculations 3"));
  EXPECT_TRUE(WaitFor([&] { return server.HealthStatus() == kServing; }, 30));
  EXPECT_NE(server.stderr_text().find("missed 3 heartbeats"), std::string::npos) << server.stderr_text();
}

}  // namespace
}  // namespace layerskip::testing
