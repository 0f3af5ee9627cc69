// Automatic speculation (--exit-layer auto, --speculations auto) and the draft head's vocabulary subset are
// lossless: greedy ids equal greedy autoregressive ids token for token, whatever E, d and autoregressive
// steps the policy mixes within a request, on random models and the trained demo model.
#include <algorithm>
#include <cmath>
#include <set>

#include "engine/decode/cost_calibration.h"
#include "engine/decode/draft_vocabulary.h"
#include "engine/decode/generate.h"
#include "gtest/gtest.h"
#include "tests/support/decode_runs.h"
#include "tests/support/test_models.h"

namespace layerskip {
namespace {

using testing::Decode;

std::vector<std::vector<int>> Prompts(int n, int vocab) {
  Rng rng(5);
  std::vector<std::vector<int>> p(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < 1 + 4 * i; ++j) p[i].push_back(static_cast<int>(rng.Next() % vocab));
  return p;
}

// A cost model on which every (E, d) looks worth trying at first: extra rows cheap, heads cheap, prior
// acceptance 1, so the policy starts speculating, sees rejections, moves between exit layers, falls back
// to autoregressive steps and probes again.
std::shared_ptr<const CostModel> Eager(int L) {
  CostModel c;
  c.num_layers = L;
  for (int n = 1; n <= CostModel::kMaxRows; ++n) c.layer_seconds.push_back(1.0 + 0.5 * (n - 1));
  c.head_seconds.assign(CostModel::kMaxRows, 0.01);
  c.draft_head_seconds = c.head_seconds;
  c.prior_acceptance.assign(L + 1, 1.0);
  return std::make_shared<const CostModel>(c);
}

DecodeOptions Auto(std::shared_ptr<const CostModel> cost, bool auto_e = true, int e = 0) {
  DecodeOptions o;
  o.mode = DecodeMode::kSelfSpeculative;
  o.auto_exit_layer = auto_e;
  o.exit_layer = e;
  o.auto_speculations = true;
  o.cost = std::move(cost);
  o.policy.probe_interval = 4;
  o.policy.probe_floor = 0.0;
  // Eager's times are not this machine's: measured step times must not rescale them. A calibrated model
  // keeps the default.
  if (o.cost && o.cost->source.empty()) o.policy.time_weight = 0.0;
  return o;
}

TEST(AutoSpeculationTest, MixedChoicesWithinARequestAreLossless) {
  const LlamaConfig c = testing::SmallConfig(8);
  for (WeightType type : {WeightType::kF32, WeightType::kBF16}) {
    auto m = testing::RandomModel(c, type, 11, 8.0f, 3);
    const auto prompts = Prompts(6, c.vocab_size);
    const int max_tokens = 40;
    std::vector<std::vector<int>> ref;
    for (const auto& p : prompts) ref.push_back(Decode(*m, {p}, DecodeOptions{}, max_tokens)[0]);
    std::vector<SpecStats> stats;
    EXPECT_EQ(Decode(*m, prompts, Auto(Eager(8)), max_tokens, &stats), ref) << WeightTypeName(type);
    EXPECT_EQ(Decode(*m, {prompts[3]}, Auto(Eager(8)), max_tokens)[0], ref[3]);
    EXPECT_EQ(Decode(*m, prompts, Auto(Eager(8), false, 3), max_tokens), ref);  // E fixed, d automatic
    // The policy really mixed: several exit layers and autoregressive steps within the batch's request.
    std::set<int> exits;
    bool autoregressive = false;
    for (const auto& [choice, steps] : stats[0].steps_by_choice) {
      if (choice.second > 0) exits.insert(choice.first);
      else autoregressive = true;
    }
    EXPECT_GE(exits.size(), 2u);
    EXPECT_TRUE(autoregressive);
  }
}

TEST(AutoSpeculationTest, CalibratedPolicyOnTheDemoModelIsLossless) {
  ModelLoadOptions load;
  load.threads = 1;  // on a loaded machine two threads mostly wait for each other; the ids are the same
  load.max_context = 512;
  auto loaded = LoadModelDir(std::string(LAYERSKIP_SOURCE_DIR) + "/models/layerskip-demo", load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  LoadedModel& m = **loaded;
  CalibrationOptions co;
  co.probe_tokens = DefaultProbeTokens(m.tokenizer.get(), m.weights->config.vocab_size);
  co.budget_seconds = 0.3;
  auto cost = CalibrateCostModel(*m.model, co);
  ASSERT_TRUE(cost.ok()) << cost.status();
  const char* texts[] = {"def __init__(self", "import os\nimport sys\n", "class Config:\n    def", "x = ["};
  std::vector<std::vector<int>> prompts;
  for (const char* t : texts) prompts.push_back(m.tokenizer->Encode(t, true));
  const int max_tokens = 24;
  std::vector<std::vector<int>> ref;
  for (const auto& p : prompts) ref.push_back(Decode(m, {p}, DecodeOptions{}, max_tokens)[0]);
  auto calibrated = std::make_shared<const CostModel>(*cost);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(Decode(m, {prompts[i]}, Auto(calibrated), max_tokens)[0], ref[i]) << texts[i];
  EXPECT_EQ(Decode(m, prompts, Auto(calibrated), max_tokens), ref);
  EXPECT_EQ(Decode(m, prompts, Auto(Eager(m.weights->config.num_hidden_layers)), max_tokens), ref);
  // With a draft vocabulary of 256 tokens (most drafts outside it are rejected), static and automatic.
  auto ids = ChooseDraftVocabulary(m.weights->config.vocab_size, 256, prompts[0], m.weights->config.eos_token_ids);
  ASSERT_TRUE(ids.ok());
  ASSERT_TRUE(m.model->SetDraftVocabulary(*ids).ok());
  DecodeOptions fixed;
  fixed.mode = DecodeMode::kSelfSpeculative;
  fixed.exit_layer = 6;
  fixed.speculation.speculations = 4;
  EXPECT_EQ(Decode(m, prompts, fixed, max_tokens), ref);
  EXPECT_EQ(Decode(m, prompts, Auto(Eager(m.weights->config.num_hidden_layers)), max_tokens), ref);
  ASSERT_TRUE(m.model->SetDraftVocabulary({}).ok());
}

TEST(DraftVocabularyTest, SubsetLogitsEqualTheFullHeadOnTheSubset) {
  const LlamaConfig c = testing::SmallConfig(4);
  auto m = testing::RandomModel(c, WeightType::kBF16, 2);
  const int V = c.vocab_size, D = c.hidden_size;
  auto ids = ChooseDraftVocabulary(V, 20, {5, 5, 5, 9, 9, 50}, {96});
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 20u);
  for (int want : {5, 9, 50, 96, 0, 1}) EXPECT_NE(std::find(ids->begin(), ids->end(), want), ids->end()) << want;
  ASSERT_TRUE(m->model->SetDraftVocabulary(*ids).ok());
  EXPECT_EQ(m->model->draft_vocab_size(), 20);
  std::vector<float> h(3 * D);
  for (size_t i = 0; i < h.size(); ++i) h[i] = std::sin(0.37f * i);
  std::vector<float> full(3 * V), draft(3 * V);
  ASSERT_TRUE(m->model->ExitHead(h.data(), 3, full.data()).ok());
  ASSERT_TRUE(m->model->DraftHead(h.data(), 3, draft.data()).ok());
  std::vector<char> in(V, 0);
  for (int id : *ids) in[id] = 1;
  for (int r = 0; r < 3; ++r)
    for (int v = 0; v < V; ++v) {
      if (in[v]) EXPECT_EQ(draft[r * V + v], full[r * V + v]);
      else EXPECT_TRUE(std::isinf(draft[r * V + v]) && draft[r * V + v] < 0);
    }
  EXPECT_FALSE(m->model->SetDraftVocabulary({1, 1}).ok());
  EXPECT_FALSE(m->model->SetDraftVocabulary({V}).ok());
  EXPECT_FALSE(ChooseDraftVocabulary(V, 0, {}, {}).ok());
  EXPECT_FALSE(ChooseDraftVocabulary(V, V + 1, {}, {}).ok());
}

TEST(AutoSpeculationTest, NeedsACostModel) {
  DecodeOptions o = Auto(nullptr);
  EXPECT_FALSE(ValidateDecodeOptions(o, 8).ok());
  o.cost = Eager(6);  // another model's
  EXPECT_FALSE(ValidateDecodeOptions(o, 8).ok());
  o.cost = Eager(8);
  EXPECT_TRUE(ValidateDecodeOptions(o, 8).ok());
}

}  // namespace
}  // namespace layerskip
