// Throughput of the pipeline vs the single process, and each stage's busy share (docs/pipeline.md).
// Disabled by default (timing, not correctness):
//   build/bin/pipeline_pipeline_bench_test --gtest_also_run_disabled_tests
// LAYERSKIP_BENCH_MODEL picks the model (default models/tiny-random), LAYERSKIP_BENCH_STAGES the plan.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "engine/runtime/cpu_backend.h"
#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/decode/generate.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "tests/pipeline/worker_process.h"

namespace layerskip::pipeline {
namespace {

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

TEST(PipelineBench, DISABLED_TokensPerSecond) {
  const std::string model = Env("LAYERSKIP_BENCH_MODEL", std::string(LAYERSKIP_SOURCE_DIR) + "/models/tiny-random");
  const std::string stages = Env("LAYERSKIP_BENCH_STAGES", "0-1,2-3");
  const int max_tokens = 32, E = std::atoi(stages.substr(stages.find('-') + 1).c_str()) + 1;
  const int n_workers = 1 + static_cast<int>(std::count(stages.begin(), stages.end(), ','));
  std::vector<std::unique_ptr<testing::WorkerProcess>> workers;
  PipelineOptions o;
  o.model_path = model;
  o.stages = stages;
  o.num_slots = 16;
  o.max_context = 256;
  o.threads = 1;
  o.token = "bench";
  for (int i = 0; i < n_workers; ++i) {
    workers.push_back(std::make_unique<testing::WorkerProcess>());
    ASSERT_TRUE(workers.back()->Start("bench"));
    o.workers.push_back(workers.back()->endpoint());
  }
  auto pipe = PipelineExecutor::Create(o);
  ASSERT_TRUE(pipe.ok()) << pipe.status();
  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 256;
  auto local = LoadModelDir(model, lo);
  ASSERT_TRUE(local.ok()) << local.status();
  LocalExecutor single(std::make_unique<CpuBackend>((*local)->model.get(), 16, (*local)->context));

  DecodeOptions d;
  d.mode = DecodeMode::kSelfSpeculative;
  d.exit_layer = E;
  d.speculation.speculations = 3;
  std::printf("model %s, stages %s, E=%d d=3, %d tokens per stream, 1 thread per process\n", model.c_str(),
              stages.c_str(), E, max_tokens);
  // Three schedules: the single process (Step), the pipeline with Step (micro-batches overlap inside one
  // step only), and the pipeline as the engine loop drives it: one group per stage in flight, each group's
  // next round started as soon as its previous one finishes (StartStep / FinishStep).
  enum Schedule { kSingle, kPipelineStep, kPipelineInFlight };
  for (int streams : {1, 16}) {
    for (Schedule sched : {kSingle, kPipelineStep, kPipelineInFlight}) {
      Executor* ex = sched == kSingle ? static_cast<Executor*>(&single) : static_cast<Executor*>(pipe->get());
      const auto before = sched == kSingle ? std::vector<StageStats>() : (*pipe)->Stats();
      std::vector<Sequence> seqs;
      seqs.reserve(streams);
      GenerationParams gp;
      gp.max_tokens = max_tokens;
      for (int i = 0; i < streams; ++i) seqs.emplace_back(i, std::vector<int>{1 + i, 2 + i, 3 + i}, gp);
      const int groups = sched == kPipelineInFlight ? std::min(streams, ex->max_in_flight()) : 1;
      std::vector<std::vector<Sequence*>> group(groups);
      for (int i = 0; i < streams; ++i) group[i % groups].push_back(&seqs[i]);
      auto unfinished = [](const std::vector<Sequence*>& g) {
        return std::any_of(g.begin(), g.end(), [](const Sequence* s) { return !s->finished(); });
      };
      const auto t0 = std::chrono::steady_clock::now();
      if (sched != kPipelineInFlight) {
        while (unfinished(group[0])) ASSERT_TRUE(ex->Step(group[0], d).ok());
      } else {
        std::vector<std::pair<uint64_t, int>> flight;
        for (int g = 0; g < groups; ++g) flight.emplace_back(*ex->StartStep(group[g], d), g);
        while (!flight.empty()) {
          const auto [id, g] = flight.front();
          flight.erase(flight.begin());
          ASSERT_TRUE(ex->FinishStep(id).ok());
          if (unfinished(group[g])) flight.emplace_back(*ex->StartStep(group[g], d), g);
        }
      }
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int tokens = 0;
      for (Sequence& s : seqs) {
        tokens += static_cast<int>(s.generated().size());
        ex->Release(s.slot());
      }
      const char* name[] = {"single", "pipeline (Step)", "pipeline (in flight)"};
      std::printf("%-21s streams %2d: %7.1f tokens/s (%.3f s)", name[sched], streams, tokens / dt, dt);
      if (sched != kSingle) {
        const auto after = (*pipe)->Stats();
        for (size_t i = 0; i < after.size(); ++i)
          std::printf("  stage %zu busy %4.1f%%", i, 100.0 * (after[i].busy_seconds - before[i].busy_seconds) / dt);
      }
      std::printf("\n");
    }
  }
}

}  // namespace
}  // namespace layerskip::pipeline
