// The pipeline on real worker processes (loopback, TCP transport): 2- and 3-stage clusters give the same
// ids as the single-process engine for batches, several (E, d), staggered streams and sampling; the
// cluster token and shard checks refuse what they should; a worker killed with SIGKILL mid-run makes
// the step UNAVAILABLE and the health not serving until it is restarted, then the output is right again.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/runtime/cpu_backend.h"
#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/decode/generate.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "tests/pipeline/worker_process.h"

namespace layerskip::pipeline {
namespace {

using testing::WorkerProcess;

const std::string kToken = "test-cluster-token";
const std::string kTiny = std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";
const std::string kFixture = std::string(LAYERSKIP_SOURCE_DIR) + "/tests/fixtures/hf/gqa_tied";

std::vector<std::vector<int>> Prompts(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int> p;
    const int len = 1 + static_cast<int>(rng.Next() % 9);
    for (int j = 0; j < len; ++j) p.push_back(static_cast<int>(rng.Next() % vocab));
    out.push_back(p);
  }
  return out;
}

GenerationParams Params(int max_tokens, float temperature = 0.0f, uint64_t seed = 0) {
  GenerationParams p;
  p.max_tokens = max_tokens;
  p.sampling.temperature = temperature;
  if (temperature > 0.0f) p.sampling.top_k = 20;
  p.seed = seed;
  return p;
}

DecodeOptions Options(DecodeMode mode, int e, int d, bool adaptive = false) {
  DecodeOptions o;
  o.mode = mode;
  o.exit_layer = e;
  o.speculation.speculations = d;
  o.speculation.adaptive = adaptive;
  return o;
}

// The single-process engine's ids (one batch; batch invariance makes them per-sequence).
std::vector<std::vector<int>> Reference(const std::string& model, const std::vector<std::vector<int>>& prompts,
                                        const std::vector<GenerationParams>& params, const DecodeOptions& o) {
  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 128;
  auto m = LoadModelDir(model, lo);
  EXPECT_TRUE(m.ok()) << m.status();
  CpuBackend backend((*m)->model.get(), static_cast<int>(prompts.size()), (*m)->context);
  auto r = GenerateBatch(backend, prompts, params, o);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::vector<int>> ids;
  for (auto& x : *r) ids.push_back(x.ids);
  return ids;
}

struct Cluster {
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  std::unique_ptr<PipelineExecutor> executor;
};

PipelineOptions ClusterOptions(const std::string& model, const std::string& stages,
                               const std::vector<std::unique_ptr<WorkerProcess>>& workers) {
  PipelineOptions o;
  o.model_path = model;
  o.stages = stages;
  for (auto& w : workers) o.workers.push_back(w->endpoint());
  o.num_slots = 8;
  o.max_context = 128;
  o.threads = 1;
  o.token = kToken;
  o.micro_batches = 2;
  o.connect_timeout = absl::Seconds(5);
  o.rpc_timeout = absl::Seconds(30);
  o.workers_wait = absl::Seconds(30);  // a worker that does not come up fails the test, not its timeout
  return o;
}

std::unique_ptr<Cluster> StartCluster(const std::string& model, const std::string& stages, int n) {
  auto c = std::make_unique<Cluster>();
  for (int i = 0; i < n; ++i) {
    c->workers.push_back(std::make_unique<WorkerProcess>());
    EXPECT_TRUE(c->workers.back()->Start(kToken)) << "worker " << i << " did not start";
  }
  auto e = PipelineExecutor::Create(ClusterOptions(model, stages, c->workers));
  EXPECT_TRUE(e.ok()) << e.status();
  if (e.ok()) c->executor = std::move(e).value();
  return c;
}

// Runs sequences to completion on the executor (all in one batch), releasing slots at the end.
absl::StatusOr<std::vector<std::vector<int>>> RunAll(Executor& ex, const std::vector<std::vector<int>>& prompts,
                                                  const std::vector<GenerationParams>& params, const DecodeOptions& o,
                                                  int max_steps = 1000) {
  std::vector<Sequence> seqs;
  seqs.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(static_cast<int>(i), prompts[i], params[i]);
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);
  for (int step = 0; step < max_steps; ++step) {
    if (std::all_of(seqs.begin(), seqs.end(), [](const Sequence& s) { return s.finished(); })) break;
    absl::Status st = ex.Step(ptrs, o);
    if (!st.ok()) {
      for (Sequence& s : seqs) ex.Release(s.slot());
      return st;
    }
  }
  std::vector<std::vector<int>> ids;
  for (Sequence& s : seqs) {
    ids.push_back(s.generated());
    ex.Release(s.slot());
  }
  return ids;
}

struct PlanCase {
  std::string model, stages;
  int workers, exit_layer;
};

class PipelineMatchesEngine : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PipelineMatchesEngine, GreedyIdsForSeveralDraftLengths) {
  const PlanCase& pc = GetParam();
  auto cluster = StartCluster(pc.model, pc.stages, pc.workers);
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  ASSERT_EQ(ex.exit_layer(), pc.exit_layer);
  const int V = ex.config().vocab_size;
  const auto prompts = Prompts(6, V, 7 + pc.exit_layer);
  const std::vector<GenerationParams> params(prompts.size(), Params(14));
  struct Mode {
    DecodeMode mode;
    int d;
    bool adaptive;
  };
  for (const Mode& m : {Mode{DecodeMode::kAutoregressive, 0, false}, Mode{DecodeMode::kSelfSpeculative, 1, false},
                        Mode{DecodeMode::kSelfSpeculative, 3, false}, Mode{DecodeMode::kSelfSpeculative, 4, true}}) {
    const DecodeOptions o = Options(m.mode, pc.exit_layer, m.d, m.adaptive);
    const auto want = Reference(pc.model, prompts, params, Options(DecodeMode::kAutoregressive, 0, 0));
    auto got = RunAll(ex, prompts, params, o);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want) << "stages " << pc.stages << " d=" << m.d << (m.adaptive ? " adaptive" : "");
  }
  EXPECT_TRUE(ex.Health().ok());
  auto stats = ex.Stats();
  ASSERT_EQ(stats.size(), static_cast<size_t>(pc.workers));
  for (auto& s : stats) {
    EXPECT_GT(s.rounds, 0) << s.name;
    EXPECT_GT(s.rows, s.rounds) << s.name;
  }
  for (const auto& ids : Reference(pc.model, prompts, params, Options(DecodeMode::kAutoregressive, 0, 0)))
    EXPECT_EQ(ids.size(), 14u);
}

INSTANTIATE_TEST_SUITE_P(Plans, PipelineMatchesEngine,
                         ::testing::Values(PlanCase{kTiny, "0-1,2-3", 2, 2}, PlanCase{kTiny, "0-0,1-3", 2, 1},
                                           PlanCase{kTiny, "0-0,1-2,3-3", 3, 1},
                                           PlanCase{kFixture, "0-1,2-2,3-3", 3, 2}));

TEST(Pipeline, StaggeredStreamsAndSlotReuse) {
  auto cluster = StartCluster(kTiny, "0-1,2-2,3-3", 3);
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  const auto prompts = Prompts(10, ex.config().vocab_size, 99);
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) params.push_back(Params(6 + static_cast<int>(i % 4) * 3));
  const auto want = Reference(kTiny, prompts, params, Options(DecodeMode::kAutoregressive, 0, 0));
  const DecodeOptions o = Options(DecodeMode::kSelfSpeculative, 2, 3);
  // A scheduler in miniature: a new stream joins every step while a slot is free; finished ones leave.
  std::vector<std::unique_ptr<Sequence>> running;
  std::vector<std::vector<int>> got(prompts.size());
  std::vector<int> free_slots;
  for (int s = ex.num_slots() - 1; s >= ex.num_slots() - 4; --s) free_slots.push_back(s);  // 4 slots only
  size_t next = 0;
  std::vector<size_t> which;
  for (int step = 0; step < 500 && (next < prompts.size() || !running.empty()); ++step) {
    if (next < prompts.size() && !free_slots.empty()) {
      running.push_back(std::make_unique<Sequence>(free_slots.back(), prompts[next], params[next]));
      free_slots.pop_back();
      which.push_back(next++);
    }
    std::vector<Sequence*> batch;
    for (auto& s : running) batch.push_back(s.get());
    ASSERT_TRUE(ex.Step(batch, o).ok());
    for (size_t i = 0; i < running.size();) {
      if (running[i]->finished()) {
        got[which[i]] = running[i]->generated();
        ex.Release(running[i]->slot());
        free_slots.push_back(running[i]->slot());
        running.erase(running.begin() + i);
        which.erase(which.begin() + i);
      } else {
        ++i;
      }
    }
  }
  EXPECT_EQ(got, want);
}

// The engine loop's schedule: one step per stage in flight, each group's next round started as soon as its
// previous one is finished (StartStep / FinishStep), so stage 0 drafts for one group while the later stages
// verify the others. Same ids as the single-process engine.
TEST(Pipeline, StepsStayInFlightAcrossRounds) {
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(std::make_unique<WorkerProcess>());
    ASSERT_TRUE(workers.back()->Start(kToken));
  }
  auto opts = ClusterOptions(kTiny, "0-1,2-2,3-3", workers);
  opts.micro_batches = 0;  // one step per stage
  auto e = PipelineExecutor::Create(opts);
  ASSERT_TRUE(e.ok()) << e.status();
  PipelineExecutor& ex = **e;
  ASSERT_EQ(ex.max_in_flight(), 3);
  const auto prompts = Prompts(7, ex.config().vocab_size, 31);
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) params.push_back(Params(9 + static_cast<int>(i % 3) * 4));
  const auto want = Reference(kTiny, prompts, params, Options(DecodeMode::kAutoregressive, 0, 0));
  std::vector<Sequence> seqs;
  seqs.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(static_cast<int>(i), prompts[i], params[i]);
  std::vector<std::vector<Sequence*>> groups(3);  // 3, 2, 2 sequences
  for (size_t i = 0; i < seqs.size(); ++i) groups[i % 3].push_back(&seqs[i]);
  const std::vector<DecodeOptions> modes = {Options(DecodeMode::kSelfSpeculative, 2, 3),
                                            Options(DecodeMode::kAutoregressive, 0, 0),
                                            Options(DecodeMode::kSelfSpeculative, 2, 2, /*adaptive=*/true)};
  auto unfinished = [](const std::vector<Sequence*>& g) {
    return std::any_of(g.begin(), g.end(), [](const Sequence* s) { return !s->finished(); });
  };
  std::vector<std::pair<uint64_t, int>> flight;  // (step id, group), oldest first
  for (int g = 0; g < 3; ++g) {
    auto id = ex.StartStep(groups[g], modes[g]);
    ASSERT_TRUE(id.ok()) << id.status();
    flight.emplace_back(*id, g);
  }
  for (int rounds = 0; !flight.empty() && rounds < 500; ++rounds) {
    const auto [id, g] = flight.front();
    flight.erase(flight.begin());
    ASSERT_TRUE(ex.FinishStep(id).ok());
    if (unfinished(groups[g])) {
      auto next = ex.StartStep(groups[g], modes[g]);
      ASSERT_TRUE(next.ok()) << next.status();
      flight.emplace_back(*next, g);
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i].generated(), want[i]) << "sequence " << i;
    ex.Release(seqs[i].slot());
  }
  EXPECT_EQ(ex.FinishStep(12345).code(), absl::StatusCode::kInvalidArgument);
}

// Rollback rides on the next call: a stage checks the length the coordinator sends against the slot's
// unsettled positions (written by its last step, acceptance not known yet) and refuses one outside them (a
// coordinator that lost track), instead of drifting.
TEST(Pipeline, LengthOutsideTheUnsettledPositionsIsRefused) {
  auto cluster = StartCluster(kTiny, "0-1,2-3", 2);
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  const auto prompts = Prompts(1, ex.config().vocab_size, 8);
  Sequence a(0, {5, 6, 7, 8, 9}, Params(20));
  const DecodeOptions o = Options(DecodeMode::kSelfSpeculative, 2, 2);
  ASSERT_TRUE(ex.Step({&a}, o).ok());
  ASSERT_TRUE(ex.Step({&a}, o).ok());  // slot 0's unsettled positions start past the prompt
  Sequence stale(0, {5}, Params(20));  // slot 0 again, not released: 0 cached positions claimed
  absl::Status st = ex.Step({&stale}, o);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("outside the unsettled positions"), std::string::npos) << st;
  ex.Release(0);
  Sequence fresh(0, prompts[0], Params(6));  // after Release the slot is clean again
  EXPECT_TRUE(ex.Step({&fresh}, o).ok());
  ex.Release(0);
}

// The explicit Accept call (kept beside the folded rollback): it truncates every stage and closes the
// open round, after which the coordinator's next call must carry exactly that length.
TEST(Pipeline, ExplicitAcceptClosesTheRound) {
  auto cluster = StartCluster(kTiny, "0-1,2-3", 2);
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  GenerationParams p = Params(12);
  Sequence a(0, {5, 6, 7}, p);
  const DecodeOptions o = Options(DecodeMode::kSelfSpeculative, 2, 3);
  ASSERT_TRUE(ex.Step({&a}, o).ok());
  for (auto& w : cluster->workers) {
    auto stub = v1::Worker::NewStub(grpc::CreateChannel(w->endpoint(), grpc::InsecureChannelCredentials()));
    v1::AcceptRequest req;
    req.add_slots(0);
    req.add_lengths(a.cached());
    v1::AcceptResponse resp;
    auto ctx = MakeContext(kToken, absl::Seconds(5));
    ASSERT_TRUE(stub->Accept(ctx.get(), req, &resp).ok()) << w->endpoint();
    req.add_slots(1);  // two slots, one length
    auto bad = MakeContext(kToken, absl::Seconds(5));
    EXPECT_EQ(stub->Accept(bad.get(), req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  while (!a.finished()) ASSERT_TRUE(ex.Step({&a}, o).ok());
  EXPECT_EQ(a.generated(), Reference(kTiny, {{5, 6, 7}}, {p}, Options(DecodeMode::kAutoregressive, 0, 0))[0]);
  ex.Release(0);
}

TEST(Pipeline, SamplingMatchesEngineWithTheSameSeeds) {
  auto cluster = StartCluster(kTiny, "0-1,2-3", 2);
  ASSERT_NE(cluster->executor, nullptr);
  const auto prompts = Prompts(4, cluster->executor->config().vocab_size, 5);
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) params.push_back(Params(10, 0.9f, 1000 + i));
  const DecodeOptions o = Options(DecodeMode::kSelfSpeculative, 2, 3);
  const auto want = Reference(kTiny, prompts, params, o);
  auto got = RunAll(*cluster->executor, prompts, params, o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
}

TEST(Pipeline, EarlyExitOnTheDraftStage) {
  auto cluster = StartCluster(kTiny, "0-1,2-3", 2);
  ASSERT_NE(cluster->executor, nullptr);
  const auto prompts = Prompts(3, cluster->executor->config().vocab_size, 11);
  const std::vector<GenerationParams> params(prompts.size(), Params(8));
  const DecodeOptions o = Options(DecodeMode::kEarlyExit, 2, 0);
  auto got = RunAll(*cluster->executor, prompts, params, o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, Reference(kTiny, prompts, params, o));
  // A request whose exit layer is not the draft stage's end is refused, not silently changed.
  auto bad = RunAll(*cluster->executor, prompts, params, Options(DecodeMode::kSelfSpeculative, 1, 2));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
}

TEST(Pipeline, WorkerWithAnotherTokenRefuses) {
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<WorkerProcess>());
    ASSERT_TRUE(workers.back()->Start("some-other-token"));
  }
  auto e = PipelineExecutor::Create(ClusterOptions(kTiny, "0-1,2-3", workers));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnauthenticated) << e.status();
}

TEST(Pipeline, MismatchedShardIsRefused) {
  auto cluster = StartCluster(kTiny, "0-1,2-3", 2);
  ASSERT_NE(cluster->executor, nullptr);
  // Another plan on the same workers: they hold other layers and say so.
  auto other = PipelineExecutor::Create(ClusterOptions(kTiny, "0-0,1-3", cluster->workers));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_NE(other.status().message().find("already holds"), std::string::npos) << other.status();
  // Another model on the same workers.
  auto model = PipelineExecutor::Create(ClusterOptions(kFixture, "0-1,2-3", cluster->workers));
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
}

TEST(Pipeline, UnreachableWorkerIsNamed) {
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  workers.push_back(std::make_unique<WorkerProcess>());
  ASSERT_TRUE(workers.back()->Start(kToken));
  auto o = ClusterOptions(kTiny, "0-1,2-3", workers);
  o.workers.push_back("127.0.0.1:1");  // nothing listens there
  o.connect_timeout = absl::Seconds(1);
  o.workers_wait = absl::Seconds(1);  // a few attempts with backoff, then give up
  auto e = PipelineExecutor::Create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnavailable) << e.status();
  EXPECT_NE(e.status().message().find("127.0.0.1:1"), std::string::npos) << e.status();
}

TEST(Pipeline, KilledWorkerIsUnavailableUntilRestarted) {
  auto cluster = StartCluster(kTiny, "0-1,2-2,3-3", 3);
  ASSERT_NE(cluster->executor, nullptr);
  PipelineExecutor& ex = *cluster->executor;
  const auto prompts = Prompts(4, ex.config().vocab_size, 3);
  const std::vector<GenerationParams> params(prompts.size(), Params(40));
  const DecodeOptions o = Options(DecodeMode::kSelfSpeculative, 2, 2);
  const auto want = Reference(kTiny, prompts, params, Options(DecodeMode::kAutoregressive, 0, 0));

  std::vector<Sequence> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(static_cast<int>(i), prompts[i], params[i]);
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ex.Step(ptrs, o).ok());
  for (size_t i = 0; i < seqs.size(); ++i)  // correct so far
    EXPECT_TRUE(std::equal(seqs[i].generated().begin(), seqs[i].generated().end(), want[i].begin()));

  const int port = cluster->workers[1]->port();
  cluster->workers[1]->Kill();  // SIGKILL, mid-stream
  const absl::Time t0 = absl::Now();
  absl::Status st = ex.Step(ptrs, o);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  std::printf("step after SIGKILL: %s\n", st.ToString().c_str());
  std::printf("health while down: %s\n", ex.Health().ToString().c_str());
  EXPECT_NE(st.message().find("stage 1"), std::string::npos) << st;
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10)) << "no hang";
  for (Sequence& s : seqs) ex.Release(s.slot());  // the caller ends the affected streams
  EXPECT_EQ(ex.Health().code(), absl::StatusCode::kUnavailable);

  // Restart on the same port: the worker re-registers and gets its shard back; then SERVING.
  cluster->workers[1] = std::make_unique<WorkerProcess>();
  ASSERT_TRUE(cluster->workers[1]->Start(kToken, port));
  absl::Status health;
  for (int i = 0; i < 100; ++i) {
    health = ex.Health();
    if (health.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(health.ok()) << health;
  auto got = RunAll(ex, prompts, params, o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
}

}  // namespace
}  // namespace layerskip::pipeline
