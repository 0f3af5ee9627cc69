// CUDA IPC between two pipeline stages on one GPU (label "gpu"; skipped without a device): two real
// layerskip-worker processes on cuda:0 with --transport ipc, a PipelineExecutor over them, and the ids must
// equal the single-process engine's on the same device (greedy self-speculative = greedy autoregressive; the
// GPU and the CPU sum in different orders, so the reference runs on cuda:0 too). Long prompts make the ring
// grow (a new IPC handle) mid-run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/execution/pipeline/pipeline_executor.h"
#include "engine/decode/generate.h"
#include "engine/runtime/factory/create_backend.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "tests/gpu/cpu_reference.h"
#include "tests/pipeline/worker_process.h"

namespace layerskip::pipeline {
namespace {

const std::string kToken = "ipc-test-token";
// $LAYERSKIP_SOURCE_DIR when set (binaries packed by tests/gpu/pack.sh run in another checkout).
const std::string kTiny = std::string(std::getenv("LAYERSKIP_SOURCE_DIR") ? std::getenv("LAYERSKIP_SOURCE_DIR")
                                                                          : LAYERSKIP_SOURCE_DIR) + "/models/tiny-random";

bool HaveDevice() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

TEST(IpcPipelineGpu, TwoWorkersOnOneGpuMatchTheEngine) {
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::unique_ptr<testing::WorkerProcess>> workers;
  PipelineOptions o;
  o.model_path = kTiny;
  o.stages = "0-1,2-3";
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<testing::WorkerProcess>());
    ASSERT_TRUE(workers.back()->Start(kToken, 0, {"--device", "cuda:0", "--transport", "ipc"})) << "worker " << i;
    o.workers.push_back(workers.back()->endpoint());
  }
  o.num_slots = 4;
  o.max_context = 256;
  o.threads = 1;
  o.token = kToken;
  o.transport = "ipc";
  o.micro_batches = 2;
  auto ex = PipelineExecutor::Create(o);
  ASSERT_TRUE(ex.ok()) << ex.status();

  std::vector<std::vector<int>> prompts = {{5, 17, 3}, {42}, {}, {100, 200}};
  for (int i = 0; i < 150; ++i) prompts[2].push_back(1 + (i * 7) % 900);  // a long prefill: a bigger ring
  GenerationParams p;
  p.max_tokens = 32;
  DecodeOptions spec;
  spec.mode = DecodeMode::kSelfSpeculative;
  spec.exit_layer = 2;
  spec.speculation.speculations = 3;
  std::vector<Sequence> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.emplace_back(static_cast<int>(i), prompts[i], p);
  std::vector<Sequence*> ptrs;
  for (Sequence& s : seqs) ptrs.push_back(&s);
  for (int step = 0; step < 500; ++step) {
    if (std::all_of(seqs.begin(), seqs.end(), [](const Sequence& s) { return s.finished(); })) break;
    absl::Status st = (*ex)->Step(ptrs, spec);
    ASSERT_TRUE(st.ok()) << st;
  }

  ModelLoadOptions lo;
  lo.threads = 1;
  lo.max_context = 256;
  auto m = LoadModelDir(kTiny, lo);
  ASSERT_TRUE(m.ok()) << m.status();
  auto backend = CreateBackend(**m, DeviceSpec::Cuda(0), 4);
  ASSERT_TRUE(backend.ok()) << backend.status();
  DecodeOptions ar;
  ar.mode = DecodeMode::kAutoregressive;
  auto want = GenerateBatch(**backend, prompts, std::vector<GenerationParams>(4, p), ar);
  ASSERT_TRUE(want.ok()) << want.status();
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i].generated(), (*want)[i].ids) << "sequence " << i;
}

}  // namespace
}  // namespace layerskip::pipeline
