// The weight type a checkpoint runs in without --dtype: its own (config.json torch_dtype, else the stored
// tensors), on the repository's real checkpoints and fixtures.
#include "engine/runtime/checkpoint_dtype.h"

#include <gtest/gtest.h>

#include <string>

namespace layerskip {
namespace {

const std::string kSource = LAYERSKIP_SOURCE_DIR;

LlamaConfig WithDType(const std::string& dtype) {
  LlamaConfig c;
  c.torch_dtype = dtype;
  return c;
}

TEST(CheckpointDTypeTest, ConfigNamesTheType) {
  auto f32 = ResolveCheckpointDType(WithDType("float32"), "BF16");  // the config wins over the stored tensors
  ASSERT_TRUE(f32.ok()) << f32.status();
  EXPECT_EQ(f32->type, WeightType::kF32);
  EXPECT_TRUE(f32->notice.empty());
  EXPECT_EQ(f32->source, "config.json torch_dtype float32");
  auto bf16 = ResolveCheckpointDType(WithDType("bfloat16"), "F32");
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ(bf16->type, WeightType::kBF16);
  auto torch_spelling = ResolveCheckpointDType(WithDType("torch.float32"), "");
  ASSERT_TRUE(torch_spelling.ok());
  EXPECT_EQ(torch_spelling->type, WeightType::kF32);
}

TEST(CheckpointDTypeTest, Float16RunsAsBf16WithANotice) {
  auto d = ResolveCheckpointDType(WithDType("float16"), "");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->type, WeightType::kBF16);
  EXPECT_NE(d->notice.find("float16 weights run as bf16"), std::string::npos) << d->notice;
  EXPECT_NE(d->notice.find("--dtype f32"), std::string::npos) << d->notice;
}

TEST(CheckpointDTypeTest, NoConfigDTypeTakesTheStoredTensors) {
  auto f32 = ResolveCheckpointDType(LlamaConfig{}, "F32");
  ASSERT_TRUE(f32.ok());
  EXPECT_EQ(f32->type, WeightType::kF32);
  auto f16 = ResolveCheckpointDType(LlamaConfig{}, "F16");
  ASSERT_TRUE(f16.ok());
  EXPECT_EQ(f16->type, WeightType::kBF16);
  EXPECT_FALSE(f16->notice.empty());
}

TEST(CheckpointDTypeTest, UnknownDTypeIsAnErrorNamingIt) {
  auto d = ResolveCheckpointDType(WithDType("float8_e4m3fn"), "");
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(d.status()));
  EXPECT_NE(d.status().message().find("float8_e4m3fn"), std::string::npos);
  EXPECT_NE(d.status().message().find("--dtype"), std::string::npos);
}

// The real checkpoints: models/ are bf16 (torch_dtype / transformers 5's "dtype"), the HF fixtures f32 and f16.
TEST(CheckpointDTypeTest, RealCheckpoints) {
  struct Case {
    const char* dir;
    WeightType type;
    bool notice;
  } cases[] = {{"models/tiny-random", WeightType::kBF16, false},
               {"models/layerskip-demo", WeightType::kBF16, false},
               {"tests/fixtures/hf/gqa_tied", WeightType::kF32, false},
               {"tests/fixtures/hf/mha_untied", WeightType::kF32, false},
               {"tests/fixtures/hf/sharded", WeightType::kBF16, true}};
  for (const Case& c : cases) {
    auto d = CheckpointDTypeOf(kSource + "/" + c.dir);
    ASSERT_TRUE(d.ok()) << c.dir << ": " << d.status();
    EXPECT_EQ(d->type, c.type) << c.dir << " (" << d->source << ")";
    EXPECT_EQ(!d->notice.empty(), c.notice) << c.dir << ": " << d->notice;
  }
  auto missing = CheckpointDTypeOf(kSource + "/models/no-such-model");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace layerskip
