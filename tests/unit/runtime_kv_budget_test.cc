// The KV-cache planner (--gpu-memory-fraction, --kv-cache-positions): slots and positions per slot from the
// device's memory, the weights and the scratch; clear errors when nothing fits.
#include "engine/runtime/kv_budget.h"

#include <gtest/gtest.h>

namespace layerskip {
namespace {

constexpr int64_t kGiB = 1LL << 30;
// The Llama-3.2-1B shape: 16 layers, 8 KV heads of 64, K and V in f32 -> 64 KiB per position.
constexpr int64_t kBytes1B = 16LL * 2 * 8 * 64 * 4;

KvBudgetRequest Device(double fraction, int slots, int context) {
  KvBudgetRequest r;
  r.num_slots = slots;
  r.context = context;
  r.bytes_per_position = kBytes1B;
  r.memory_fraction = fraction;
  r.device_total_bytes = 140 * kGiB;
  r.device_free_bytes = 139 * kGiB;
  r.weight_bytes = 3 * kGiB;
  r.scratch_bytes = kGiB;
  return r;
}

TEST(KvBudgetTest, HostHoldsWhatIsAsked) {
  KvBudgetRequest r;
  r.num_slots = 4;
  r.context = 2048;
  r.bytes_per_position = 1024;
  auto b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->num_slots, 4);
  EXPECT_EQ(b->positions_per_slot, 2048);
  EXPECT_EQ(b->total_positions, 4 * 2048);
  EXPECT_EQ(b->bytes, 4LL * 2048 * 1024);
  EXPECT_TRUE(b->note.empty());
}

TEST(KvBudgetTest, KvPositionsBoundTheTotalAndEachSlot) {
  KvBudgetRequest r;
  r.num_slots = 2;
  r.context = 2048;
  r.bytes_per_position = 100;
  r.kv_positions = 150;  // one 100-position request at a time fits; a slot never needs more than 150
  auto b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->num_slots, 2);
  EXPECT_EQ(b->positions_per_slot, 150);
  EXPECT_EQ(b->total_positions, 150);
  EXPECT_EQ(b->bytes, 2 * 150 * 100);
  r.kv_positions = 1 << 20;  // more than the slots can hold: the slots' size
  b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->positions_per_slot, 2048);
  EXPECT_EQ(b->total_positions, 2 * 2048);
}

TEST(KvBudgetTest, FullContextSlotsKeepTheirSizeAndKvPositionsBoundAdmission) {
  KvBudgetRequest r;
  r.num_slots = 2;
  r.context = 2048;
  r.bytes_per_position = 100;
  r.kv_positions = 150;
  r.full_context_slots = true;  // the CPU cache: every slot is allocated the whole context
  auto b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->positions_per_slot, 2048);
  EXPECT_EQ(b->total_positions, 150);
  EXPECT_EQ(b->bytes, 2 * 2048 * 100);
}

TEST(KvBudgetTest, FractionLeavesTheKvCacheWhatWeightsAndScratchDoNotUse) {
  // 0.5 * 140 GiB - 3 - 1 = 66 GiB; a 4096-position slot is 256 MiB -> 264 slots fit, 64 asked.
  auto b = PlanKvBudget(Device(0.5, 64, 4096));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->num_slots, 64);
  EXPECT_EQ(b->positions_per_slot, 4096);
  EXPECT_TRUE(b->note.empty());
  b = PlanKvBudget(Device(0.5, 1000, 4096));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->num_slots, 264);
  EXPECT_EQ(b->bytes, 264LL * 4096 * kBytes1B);
  EXPECT_LE(b->bytes + 4 * kGiB, 70 * kGiB);
  EXPECT_NE(b->note.find("264 of the 1000 slots"), std::string::npos) << b->note;
}

TEST(KvBudgetTest, DefaultFractionIsVllms) {
  auto b = PlanKvBudget(Device(0, 100000, 4096));  // 0.9 * 140 - 4 = 122 GiB -> 488 slots
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->num_slots, 488);
}

TEST(KvBudgetTest, KvPositionsOnADeviceSizeTheSlots) {
  KvBudgetRequest r = Device(0.5, 64, 8192);
  r.kv_positions = 1024;  // each slot 1024 positions: 64 MiB
  auto b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->positions_per_slot, 1024);
  EXPECT_EQ(b->num_slots, 64);
  EXPECT_EQ(b->total_positions, 1024);
  EXPECT_EQ(b->bytes, 64LL * 1024 * kBytes1B);
}

TEST(KvBudgetTest, NothingFitsIsAClearError) {
  KvBudgetRequest r = Device(0.02, 8, 4096);  // 2.8 GiB < 3 GiB of weights
  auto b = PlanKvBudget(r);
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(b.status()));
  EXPECT_NE(b.status().message().find("no KV-cache slot fits"), std::string::npos) << b.status();
  EXPECT_NE(b.status().message().find("--gpu-memory-fraction"), std::string::npos);
  r.memory_fraction = 0.0302;  // 4.23 GiB: 0.23 GiB left, a slot needs 0.25
  b = PlanKvBudget(r);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("one slot of 4096 positions needs 0.25 GiB"), std::string::npos) << b.status();
}

TEST(KvBudgetTest, FractionAboveFreeMemoryIsAnError) {
  KvBudgetRequest r = Device(0.9, 8, 4096);
  r.device_free_bytes = 20 * kGiB;  // another process holds the rest
  auto b = PlanKvBudget(r);
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(b.status()));
  EXPECT_NE(b.status().message().find("only 20.00 GiB is free"), std::string::npos) << b.status();
}

TEST(KvBudgetTest, BadInputsNameTheFlag) {
  KvBudgetRequest r = Device(1.5, 8, 4096);
  EXPECT_NE(PlanKvBudget(r).status().message().find("--gpu-memory-fraction"), std::string::npos);
  r = Device(0.5, 0, 4096);
  EXPECT_NE(PlanKvBudget(r).status().message().find("--num-slots"), std::string::npos);
  r = Device(0.5, 8, 4096);
  r.kv_positions = -1;
  EXPECT_NE(PlanKvBudget(r).status().message().find("--kv-cache-positions"), std::string::npos);
  r = Device(0.5, 8, 4096);
  r.bytes_per_position = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(PlanKvBudget(r).status()));
}

// The Llama-3.2-1B shape: 1.236 B parameters (tied head), 2.47 GB in bf16; 32 KiB of f32 K and V per position
// for its 16 layers; a worker with half the layers holds half of that.
TEST(KvBudgetTest, SizesFromTheShapes) {
  LlamaConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.vocab_size = 128256;
  c.tie_word_embeddings = true;
  EXPECT_EQ(KvBytesPerPosition(c, 0, 16, 4), kBytes1B);
  EXPECT_EQ(KvBytesPerPosition(c, 8, 16, 2), kBytes1B / 4);
  const int64_t all = WeightBytes(c, 0, 16, true, true, 2);
  EXPECT_NEAR(static_cast<double>(all), 2.0 * 1.2358e9, 0.01e9);
  EXPECT_EQ(WeightBytes(c, 0, 8, true, false, 2) + WeightBytes(c, 8, 16, false, true, 2) - all,
            c.vocab_size * int64_t{2048} * 2);  // the second stage holds its own copy of the tied head
  EXPECT_EQ(ScratchBytes(c, 1) - kScratchHeadroom, 4 * (3 * 2048 + 2 * 2048 + 2 * 512 + 2 * 8192 + 128256));
}

}  // namespace
}  // namespace layerskip
