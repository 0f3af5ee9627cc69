// The data plane under a PipelineExecutor on real worker processes (loopback): a link that cannot be
// re-established fails the round with UNAVAILABLE (never a fatal error) and the executor re-wires before
// the next step; a peer that holds the token and takes over a stage's inbound link is displaced by the
// real previous stage at its next send. Output is checked against the single-process engine.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "engine/runtime/cpu_backend.h"
#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/decode/generate.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "layerskip/v1/worker.grpc.pb.h"
#include "tests/pipeline/worker_process.h"
#include "transport/link_auth.h"
#include "transport/socket_io.h"
#include "transport/tcp_transport.h"

namespace layerskip::pipeline {
namespace {

using testing::WorkerProcess;

const std::string kToken = "data-plane-test-token";
const std::string kTiny = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";

struct Cluster {
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  std::unique_ptr<PipelineExecutor> executor;
};

std::unique_ptr<Cluster> StartCluster() {
  auto c = std::make_unique<Cluster>();
  PipelineOptions o;
  o.model_path = kTiny;
  o.stages = "0-1,2-3";
  for (int i = 0; i < 2; ++i) {
    c->workers.push_back(std::make_unique<WorkerProcess>());
    EXPECT_TRUE(c->workers.back()->Start(kToken)) << "worker " << i << " did not start";
    o.workers.push_back(c->workers.back()->endpoint());
  }
  o.num_slots = 4;
  o.max_context = 128;
  o.threads = 1;
  o.token = kToken;
  o.micro_batches = 2;
  o.rpc_timeout = absl::Seconds(30);
  auto e = PipelineExecutor::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  if (e.ok()) c->executor = std::move(e).value();
  return c;
}

std::unique_ptr<v1::Worker::Stub> Stub(const WorkerProcess& w) {
  return v1::Worker::NewStub(grpc::CreateChannel(w.endpoint(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("x-layerskip-cluster-token", kToken);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return c;
}

std::vector<std::vector<int>> Prompts() { return {{5, 17, 3}, {42}, {7, 7, 7, 7}, {100, 200}}; }

GenerationParams Greedy(int max_tokens) {
  GenerationParams p;
  p.max_tokens = max_tokens;
  return p;
}

DecodeOptions SelfSpeculative() {
  DecodeOptions o;
  o.mode = DecodeMode::kSelfSpeculative;
  o.exit_layer = 2;
  o.speculation.speculations = 3;
  return o;
}

std::vector<std::vector<int>> Reference(int max_tokens) {
  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 128;
  auto m = LoadModelDir(kTiny, lo);
  EXPECT_TRUE(m.ok()) << m.status();
  CpuBackend backend((*m)->model.get(), 4, (*m)->context);
  DecodeOptions ar;
  ar.mode = DecodeMode::kAutoregressive;
  auto r = GenerateBatch(backend, Prompts(), std::vector<GenerationParams>(4, Greedy(max_tokens)), ar);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::vector<int>> ids;
  for (auto& x : *r) ids.push_back(x.ids);
  return ids;
}

// Steps the sequences until they finish; the first failed step's status is returned (slots released).
absl::StatusOr<std::vector<std::vector<int>>> RunAll(PipelineExecutor& ex, int max_tokens) {
  std::vector<Sequence> seqs;
  const auto prompts = Prompts();
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(static_cast<int>(i), prompts[i], Greedy(max_tokens));
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);
  absl::Status st;
  for (int step = 0; step < 1000 && st.ok(); ++step) {
    if (std::all_of(seqs.begin(), seqs.end(), [](const Sequence& s) { return s.finished(); })) break;
    st = ex.Step(ptrs, SelfSpeculative());
  }
  for (Sequence& s : seqs) ex.Release(s.slot());
  if (!st.ok()) return st;
  std::vector<std::vector<int>> ids;
  for (Sequence& s : seqs) ids.push_back(s.generated());
  return ids;
}

TEST(DataPlane, BrokenLinkFailsTheRoundOnlyAndIsRewired) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  const auto want = Reference(24);
  // Stage 0 is re-pointed at a port where nobody listens: its next Draft cannot send the activations.
  auto stub = Stub(*cluster->workers[0]);
  v1::ConnectRequest bad;
  bad.set_transport("tcp");
  bad.set_stage(0);
  bad.set_next_endpoint("127.0.0.1:1");
  v1::ConnectResponse resp;
  auto ctx = Context();
  EXPECT_FALSE(stub->Connect(ctx.get(), bad, &resp).ok());

  auto failed = RunAll(ex, 24);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_NE(failed.status().message().find("data plane"), std::string::npos) << failed.status();
  // Both stages are up, so Health re-wires the links and the pipeline serves the right tokens again.
  absl::Status health = ex.Health();
  EXPECT_TRUE(health.ok()) << health;
  auto got = RunAll(ex, 24);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
}

TEST(DataPlane, HijackedLinkIsTakenBackByThePreviousStage) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  const auto want = Reference(24);
  auto stub = Stub(*cluster->workers[1]);
  v1::HealthResponse h;
  auto ctx = Context();
  ASSERT_TRUE(stub->Health(ctx.get(), v1::HealthRequest(), &h).ok());
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort(h.shard().data_endpoint(), &host, &port).ok());

  // A peer that holds the token claims stage 0's link to stage 1, then stays silent.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  SetIoTimeout(fd, absl::Seconds(10));
  LinkSocket link(fd);
  ASSERT_TRUE(DialHandshake(link, kToken, 0, 1).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  auto got = RunAll(ex, 24);  // stage 0 notices its link was closed and re-dials before sending
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
  char b;
  EXPECT_EQ(::recv(fd, &b, 1, 0), 0) << "the hijacking link was closed";
  ::close(fd);
  const std::vector<StageStats> stats = ex.Stats();
  EXPECT_GE(stats[1].data_links_accepted, 3);  // wiring, the hijack, stage 0 again
}

}  // namespace
}  // namespace layerskip::pipeline
