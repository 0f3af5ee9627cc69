// A pipeline stage computes each row on its role's kernel path as the single-process engine does: under
// the pair amx (prompt) / avx512-bf16 (generated), the first stage's drafting rows and a later stage's
// verification rows, given the sequence's prompt_tokens (worker.proto), equal bitwise the engine's
// DraftAll and verification forward on the trained demo model; without prompt_tokens (an older
// coordinator: every row generated) they differ, so the field reaches the kernels. Skipped without AMX.
#include <cstring>
#include <string>
#include <vector>

#include "engine/decode/speculative_phases.h"
#include "engine/runtime/cpu_backend.h"
#include "engine/runtime/loaded_model.h"
#include "gtest/gtest.h"
#include "kernels/cpu_features.h"
#include "worker/shard.h"

namespace layerskip {
namespace {

const std::string kDemo = std::string(LAYERSKIP_SOURCE_DIR) + "/models/layerskip-demo";
constexpr int kExit = 4, kDrafts = 3;

class ShardRolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const cpu::CpuFeatures& f = cpu::HostCpuFeatures();
    if (!cpu::CpuKernelsSupported(cpu::CpuKernels::kAmx, f) || !cpu::AmxPermission().ok())
      GTEST_SKIP() << "host lacks AMX-BF16 (or Linux refuses the tiles): " << f.Describe();
    cpu::SetCpuKernelPairForTesting({cpu::CpuKernels::kAmx, cpu::CpuKernels::kAvx512Bf16});
  }
  void TearDown() override { cpu::ResetCpuKernelsForTesting(); }
};

absl::StatusOr<std::unique_ptr<worker::Shard>> Stage(int first, int end, bool embedding, bool head) {
  worker::ShardSpec s;
  s.model_path = kDemo;
  s.first_layer = first;
  s.end_layer = end;
  s.embedding = embedding;
  s.head = head;
  s.num_slots = 2;
  s.context = 128;
  s.threads = 1;
  return worker::Shard::Load(s);
}

TEST_F(ShardRolesTest, StagesMarkPromptRowsLikeTheEngine) {
  ModelLoadOptions load;
  load.threads = 1;
  load.max_context = 128;
  auto loaded = LoadModelDir(kDemo, load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LoadedModel& m = **loaded;
  const int L = m.weights->config.num_hidden_layers, D = m.weights->config.hidden_size;
  const std::vector<int> prompt = m.tokenizer->Encode("def fibonacci(n):\n    \"\"\"Return the n-th", true);
  const int P = static_cast<int>(prompt.size());

  // The engine: drafting through [0, E), then the verification batch through [E, L-1).
  CpuBackend engine(m.model.get(), 1, m.context);
  std::vector<DraftState> drafts(1);
  drafts[0].slot = 0;
  drafts[0].prompt_tokens = P;
  drafts[0].max_drafts = kDrafts;
  drafts[0].input = prompt;
  std::unique_ptr<Activations> x;
  ASSERT_TRUE(DraftAll(engine, drafts, kExit, SpeculationConfig{}, &x).ok());
  std::vector<float> want_draft(static_cast<size_t>(x->rows()) * D);
  ASSERT_TRUE(engine.Download(*x, want_draft.data()).ok());
  auto layout = LayoutVerification({{0, 0, drafts[0].rows, static_cast<int>(drafts[0].tokens.size()), P}});
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_TRUE(engine.Forward(kExit, L - 1, layout->batch, *x).ok());
  std::vector<float> want_verify(want_draft.size());
  ASSERT_TRUE(engine.Download(*x, want_verify.data()).ok());

  auto first = Stage(0, kExit, true, true);
  ASSERT_TRUE(first.ok()) << first.status();
  auto middle = Stage(kExit, L - 1, false, false);
  ASSERT_TRUE(middle.ok()) << middle.status();
  // slot 0 with the prompt length, slot 1 without it (every row generated).
  for (int slot : {0, 1}) {
    const int prompt_tokens = slot == 0 ? P : 0;
    v1::DraftRequest dr;
    dr.set_round(1 + slot);
    dr.set_exit_layer(kExit);
    v1::DraftSequence* ds = dr.add_seqs();
    ds->set_slot(slot);
    ds->set_cached(0);
    ds->set_prompt_tokens(prompt_tokens);
    ds->mutable_pending()->Add(prompt.begin(), prompt.end());
    ds->set_max_drafts(kDrafts);
    v1::DraftResponse dresp;
    std::vector<float> rows;
    ASSERT_TRUE((*first)->Draft(dr, &dresp, &rows).ok());
    v1::VerifyRequest vr;
    vr.set_round(1 + slot);
    v1::VerifySequence* vs = vr.add_seqs();
    vs->set_slot(slot);
    vs->set_cached(0);
    vs->set_rows(drafts[0].rows);
    vs->set_prompt_tokens(prompt_tokens);
    std::vector<float> verified = want_draft;  // the engine's rows: only the middle stage's own roles differ
    v1::VerifyResponse vresp;
    ASSERT_TRUE((*middle)->Verify(vr, verified, &vresp).ok());
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    const bool draft_same = same(rows, want_draft), verify_same = same(verified, want_verify);
    if (slot == 0) {
      EXPECT_TRUE(draft_same) << "the first stage's rows differ from the engine's drafting";
      EXPECT_TRUE(verify_same) << "the middle stage's rows differ from the engine's verification";
    } else {
      EXPECT_FALSE(draft_same) << "prompt_tokens made no difference on the first stage";
      EXPECT_FALSE(verify_same) << "prompt_tokens made no difference on the middle stage";
    }
  }
}

}  // namespace
}  // namespace layerskip
