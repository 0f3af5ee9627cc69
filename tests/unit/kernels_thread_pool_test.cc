// The thread pool: every index runs exactly once whatever the thread count, the CPUs available or the
// workers' lateness; the default thread count follows the affinity mask and the cgroup quota parsers.
#include <sched.h>

#include <atomic>
#include <vector>

#include "engine/util/cpu_budget.h"
#include "engine/util/thread_pool.h"
#include "gtest/gtest.h"

namespace layerskip {
namespace {

// Runs `loops` ParallelFor and ParallelTasks calls of varied sizes; checks each index ran exactly once.
void CheckExactlyOnce(ThreadPool& pool, int loops) {
  for (int loop = 0; loop < loops; ++loop) {
    const int64_t n = 1 + (loop * 37) % 300, grain = 1 + loop % 7;
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
      ASSERT_LT(b, e);
      ASSERT_TRUE(b % grain == 0);
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "loop " << loop << " n " << n << " i " << i;
    std::vector<std::atomic<int>> tasks(n);
    pool.ParallelTasks(n, [&](int64_t t) { tasks[t].fetch_add(1); });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(tasks[i].load(), 1) << "loop " << loop << " task " << i;
  }
}

TEST(ThreadPoolTest, EveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    CheckExactlyOnce(pool, 2000);
  }
}

TEST(ThreadPoolTest, ManyTasksBeyondOneLoopsPieceCount) {
  ThreadPool pool(2);
  std::vector<std::atomic<int>> hits(100000);
  pool.ParallelTasks(100000, [&](int64_t t) { hits[t].fetch_add(1); });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

// Workers that are mostly not running (more threads than CPUs, all on one CPU) still leave every index
// done exactly once: the caller claims what they have not started.
TEST(ThreadPoolTest, OversubscribedOnOneCpu) {
  cpu_set_t old_set, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof(old_set), &old_set), 0);
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &old_set)) {
      CPU_SET(c, &one);
      break;
    }
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  {
    EXPECT_EQ(DefaultThreadCount(), 1);
    ThreadPool pool(4);  // workers inherit the one-CPU mask
    CheckExactlyOnce(pool, 3000);
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(old_set), &old_set), 0);
}

TEST(ThreadPoolTest, DefaultThreadCountWithinAffinity) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int n = DefaultThreadCount();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, CPU_COUNT(&set));
  if (auto limit = CgroupCpuLimit()) {
    EXPECT_LE(n, static_cast<int>(*limit) + 1);
  }
  ThreadPool pool;
  EXPECT_EQ(pool.num_threads(), n);
}

TEST(CpuBudgetTest, ParsesCgroupV2CpuMax) {
  EXPECT_EQ(ParseCpuMax("max 100000\n"), std::nullopt);
  EXPECT_DOUBLE_EQ(*ParseCpuMax("150000 100000\n"), 1.5);
  EXPECT_DOUBLE_EQ(*ParseCpuMax("200000 100000"), 2.0);
  EXPECT_EQ(ParseCpuMax(""), std::nullopt);
  EXPECT_EQ(ParseCpuMax("garbage"), std::nullopt);
  EXPECT_EQ(ParseCpuMax("0 100000"), std::nullopt);
}

TEST(CpuBudgetTest, ParsesCgroupV1CfsQuota) {
  EXPECT_EQ(ParseCfsQuota("-1\n", "100000\n"), std::nullopt);
  EXPECT_DOUBLE_EQ(*ParseCfsQuota("50000\n", "100000\n"), 0.5);
  EXPECT_DOUBLE_EQ(*ParseCfsQuota("300000", "100000"), 3.0);
  EXPECT_EQ(ParseCfsQuota("x", "100000"), std::nullopt);
}

}  // namespace
}  // namespace layerskip
