// Which weights and KV cache a real layerskip-coordinator holds, and in which dtype. A pipeline's coordinator (--workers,
// real layerskip-worker processes on loopback) loads none: its peak resident memory stays below the
// single-process engine's by most of the weights' bytes. --dtype defaults to the checkpoint's own
// (GetModelInfo.dtype), and the workers compute in that dtype (the same greedy ids as `layerskip generate`).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/pipeline/worker_process.h"
#include "tests/service/coordinator_process.h"

namespace layerskip::testing {
namespace {

const std::string kSource = LAYERSKIP_SOURCE_DIR;
const std::string kDemo = kSource + "/models/layerskip-demo";  // bf16, 12 layers, 10.8 M parameters
const std::string kF32 = kSource + "/tests/fixtures/hf/gqa_tied";  // torch_dtype float32, 4 layers, no tokenizer
constexpr int kServing = 1;
constexpr char kToken[] = "weights-test-token";

// Peak resident set (VmHWM) of a process in bytes; -1 when unreadable.
int64_t PeakRss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

std::string ModelDType(const CoordinatorProcess& server) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::ModelInfo info;
  const grpc::Status s = server.Stub()->GetModelInfo(&ctx, {}, &info);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return info.dtype();
}

std::vector<int> GreedyIds(const CoordinatorProcess& server, const std::vector<int>& prompt, int n) {
  v1::GenerateRequest q;
  for (int id : prompt) q.add_prompt_ids(id);
  q.set_max_tokens(n);
  q.set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = server.Stub()->Generate(&ctx, q);
  std::vector<int> ids;
  v1::GenerateResponse m;
  while (reader->Read(&m)) ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
  const grpc::Status s = reader->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  return ids;
}

class CoordinatorWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv("LAYERSKIP_CLUSTER_TOKEN", kToken, 1); }
  // Two workers; the coordinator's flags for a 2-stage pipeline over them.
  std::vector<std::string> Pipeline(const std::string& model, const std::string& stages, int exit_layer,
                                    const std::vector<std::string>& worker_flags = {}) {
    std::string endpoints;
    for (int i = 0; i < 2; ++i) {
      workers_.push_back(std::make_unique<WorkerProcess>());
      EXPECT_TRUE(workers_.back()->Start(kToken, 0, worker_flags));
      endpoints += (i ? "," : "") + workers_.back()->endpoint();
    }
    return {"--model", model, "--threads", "1", "--workers", endpoints, "--stages", stages,
            "--default-exit-layer", std::to_string(exit_layer), "--num-slots", "2", "--max-context", "128"};
  }
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
};

TEST_F(CoordinatorWeightsTest, DTypeDefaultsToTheCheckpointsOwn) {
  struct Case {
    std::string model, flag, want;
  } cases[] = {{kSource + "/models/tiny-random", "", "bf16"},
               {kDemo, "", "bf16"},
               {kF32, "", "f32"},
               {kF32, "bf16", "bf16"}};  // --dtype still overrides
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--model", c.model, "--threads", "1", "--num-slots", "1", "--max-context", "64"};
    if (!c.flag.empty()) args.insert(args.end(), {"--dtype", c.flag});
    CoordinatorProcess server(args);
    ASSERT_TRUE(server.ok()) << c.model << ": " << server.stderr_text();
    EXPECT_EQ(ModelDType(server), c.want) << c.model << " --dtype " << c.flag;
  }
}

// GetModelInfo reports the KV cache: tiny-random has 4 layers of 2 KV heads x 32, f32 K and V -> 2 KiB per
// position; every slot holds the whole context; --kv-cache-positions bounds what running sequences hold.
TEST_F(CoordinatorWeightsTest, ModelInfoReportsTheKvCache) {
  const std::string tiny = kSource + "/models/tiny-random";
  for (const int64_t budget : {0, 100}) {
    std::vector<std::string> args = {"--model", tiny, "--threads", "1", "--num-slots", "2", "--max-context", "64"};
    if (budget) args.insert(args.end(), {"--kv-cache-positions", std::to_string(budget)});
    CoordinatorProcess server(args);
    ASSERT_TRUE(server.ok()) << server.stderr_text();
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    ASSERT_TRUE(server.Stub()->GetModelInfo(&ctx, {}, &info).ok());
    EXPECT_EQ(info.kv_cache_positions(), budget ? budget : 2 * 64);
    EXPECT_EQ(info.kv_cache_bytes(), 2 * 64 * 2048);
  }
}

// --gpu-memory-fraction sizes a CUDA device's cache: on the host it is one clear line and exit 1.
TEST_F(CoordinatorWeightsTest, GpuMemoryFractionWithoutACudaDeviceIsRefused) {
  CoordinatorProcess server({"--model", kSource + "/models/tiny-random", "--gpu-memory-fraction", "0.5"});
  EXPECT_FALSE(server.ok());
  EXPECT_EQ(server.Wait(30), 1);
  EXPECT_NE(server.stderr_text().find("--gpu-memory-fraction sizes a CUDA device's KV cache: it needs --device cuda"),
            std::string::npos) << server.stderr_text();
}

// A worker's --kv-cache-positions caps its shard's cache: 2 slots x 128 positions fit in 256 and serve; in
// 200 the shard is refused, and the coordinator gives up naming the flag.
TEST_F(CoordinatorWeightsTest, WorkerKvCachePositionsCapTheShard) {
  {
    CoordinatorProcess server(Pipeline(kF32, "0-1,2-3", 2, {"--kv-cache-positions", "256"}));
    ASSERT_TRUE(server.ok()) << server.stderr_text();
    ASSERT_TRUE(WaitFor([&] { return server.HealthStatus() == kServing; }, 60)) << server.stderr_text();
    EXPECT_EQ(GreedyIds(server, {3, 1, 4}, 4).size(), 4u);
  }
  workers_.clear();
  std::vector<std::string> args = Pipeline(kF32, "0-1,2-3", 2, {"--kv-cache-positions", "200"});
  args.insert(args.end(), {"--workers-wait", "3"});
  CoordinatorProcess server(args);
  if (server.ok()) EXPECT_NE(server.HealthStatus(), kServing);
  EXPECT_EQ(server.Wait(60), 1);
  EXPECT_NE(server.stderr_text().find("--kv-cache-positions"), std::string::npos) << server.stderr_text();
}

// The pipeline's coordinator hands its resolved dtype to the workers: an f32 checkpoint without --dtype
// reports f32 and streams exactly `layerskip generate`'s greedy ids (which run f32 by the same default).
TEST_F(CoordinatorWeightsTest, PipelineWorkersRunTheCheckpointsDType) {
  CoordinatorProcess server(Pipeline(kF32, "0-1,2-3", 2));
  ASSERT_TRUE(server.ok()) << server.stderr_text();
  ASSERT_TRUE(WaitFor([&] { return server.HealthStatus() == kServing; }, 60)) << server.stderr_text();
  EXPECT_EQ(ModelDType(server), "f32");
  const std::string cli = CliGenerateJson(kF32, "--prompt-ids 3,1,4,1,5 --max-tokens 12 --ignore-eos");
  ASSERT_FALSE(cli.empty());
  const std::vector<int> want = nlohmann::json::parse(cli)["ids"].get<std::vector<int>>();
  EXPECT_EQ(GreedyIds(server, {3, 1, 4, 1, 5}, 12), want);
}

// Peak RSS: the demo model in f32 is 41 MiB of weights. The single-process coordinator holds them; the
// pipeline's must not: it stays below the local one by at least 3/4 of the weights' bytes, while serving.
TEST_F(CoordinatorWeightsTest, PipelineCoordinatorLoadsNoWeights) {
  constexpr int64_t kWeightBytes = 10803456LL * 4;
  std::vector<std::string> args = Pipeline(kDemo, "0-5,6-11", 6);
  args.insert(args.end(), {"--dtype", "f32"});
  CoordinatorProcess pipeline(args);
  ASSERT_TRUE(pipeline.ok()) << pipeline.stderr_text();
  ASSERT_TRUE(WaitFor([&] { return pipeline.HealthStatus() == kServing; }, 60)) << pipeline.stderr_text();
  EXPECT_EQ(GreedyIds(pipeline, {5, 6, 7}, 8).size(), 8u);  // it serves (the workers hold the weights)
  const int64_t pipeline_rss = PeakRss(pipeline.pid());

  CoordinatorProcess local({"--model", kDemo, "--threads", "1", "--num-slots", "2", "--max-context", "128", "--dtype", "f32"});
  ASSERT_TRUE(local.ok()) << local.stderr_text();
  EXPECT_EQ(GreedyIds(local, {5, 6, 7}, 8).size(), 8u);
  const int64_t local_rss = PeakRss(local.pid());
  ASSERT_GT(pipeline_rss, 0);
  ASSERT_GT(local_rss, 0);
  EXPECT_LT(pipeline_rss + kWeightBytes * 3 / 4, local_rss)
      << "peak RSS: pipeline coordinator " << pipeline_rss / 1048576 << " MiB, single-process "
      << local_rss / 1048576 << " MiB, weights " << kWeightBytes / 1048576 << " MiB";
  std::printf("peak RSS: pipeline coordinator %lld MiB, single-process %lld MiB (f32 weights %lld MiB)\n",
              static_cast<long long>(pipeline_rss / 1048576), static_cast<long long>(local_rss / 1048576),
              static_cast<long long>(kWeightBytes / 1048576));
}

}  // namespace
}  // namespace layerskip::testing
