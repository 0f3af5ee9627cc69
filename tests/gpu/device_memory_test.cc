// cuda::QueryDeviceMemory on a real device, and the KV-cache planner fed with its figures (label gpu;
// skipped without a device).
#include "engine/runtime/cuda/device_memory.h"

#include <gtest/gtest.h>

#include "engine/runtime/cuda/cuda_kv_plan.h"
#include "engine/runtime/kv_budget.h"
#include "kernels/cuda_common.h"

namespace layerskip::cuda {
namespace {

TEST(DeviceMemoryTest, FreeAndTotalFollowAnAllocation) {
  if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto before = QueryDeviceMemory(0);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_GT(before->total_bytes, 0);
  EXPECT_LE(before->free_bytes, before->total_bytes);
  constexpr size_t kBytes = size_t{1} << 30;
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, kBytes), cudaSuccess);
  auto during = QueryDeviceMemory(0);
  cudaFree(p);
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->total_bytes, before->total_bytes);
  EXPECT_LE(during->free_bytes, before->free_bytes - static_cast<int64_t>(kBytes) + (64 << 20));
}

TEST(DeviceMemoryTest, NoSuchDeviceIsAnError) {
  auto m = QueryDeviceMemory(DeviceCount() + 3);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
}

TEST(DeviceMemoryTest, PlannerOnThisDevice) {
  if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto mem = QueryDeviceMemory(0);
  ASSERT_TRUE(mem.ok());
  KvBudgetRequest r;
  r.num_slots = 64;
  r.context = 4096;
  r.bytes_per_position = 16LL * 2 * 8 * 64 * 4;  // Llama-3.2-1B shape, f32 K and V
  r.memory_fraction = 0.5;
  r.device_total_bytes = mem->total_bytes;
  r.device_free_bytes = mem->free_bytes;
  r.weight_bytes = 2500LL << 20;
  r.scratch_bytes = 512LL << 20;
  auto b = PlanKvBudget(r);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GE(b->num_slots, 1);
  EXPECT_LE(static_cast<double>(b->bytes + r.weight_bytes + r.scratch_bytes), 0.5 * mem->total_bytes);
  std::printf("device: %.1f GiB total, %.1f GiB free; 1B shape at 0.5: %d slots x %d positions (%.1f GiB)\n",
              mem->total_bytes / 1073741824.0, mem->free_bytes / 1073741824.0, b->num_slots, b->positions_per_slot,
              b->bytes / 1073741824.0);
}

// The backend's entry point: the demo model's shapes on this device at fraction 0.5 hold the 8 slots asked
// for; at a fraction below the weights it is the planner's clear error.
TEST(DeviceMemoryTest, PlanCudaKvCacheForTheDemoShapes) {
  if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  LlamaConfig c;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 4096;
  CudaKvPlanRequest r;
  r.end_layer = 12;
  r.num_slots = 8;
  r.context = 2048;
  r.memory_fraction = 0.5;
  auto plan = PlanCudaKvCache(c, r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_slots, 8);
  EXPECT_EQ(plan->positions_per_slot, 2048);
  EXPECT_EQ(plan->bytes, 8LL * 2048 * 2 * 12 * 128 * 4);
  r.memory_fraction = 1e-6;
  plan = PlanCudaKvCache(c, r);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("no KV-cache slot fits"), std::string::npos) << plan.status();
}

}  // namespace
}  // namespace layerskip::cuda
