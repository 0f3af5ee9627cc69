#pragma once
// How many CPUs this process may use: the affinity mask and the cgroup CPU quota.
#include <optional>
#include <string_view>

namespace layerskip {

// Threads to use by default: the CPUs in this thread's affinity mask, capped by the cgroup CPU quota
// rounded up (a Kubernetes limit of 1500m gives 2), at least 1.
int DefaultThreadCount();

// The cgroup CPU quota in CPUs (quota / period), or nullopt when unlimited or not found. Looks at
// cgroup v2 cpu.max and v1 cpu.cfs_quota_us / cpu.cfs_period_us of this process's cgroup and its
// ancestors (the smallest wins).
std::optional<double> CgroupCpuLimit();

// Parses a cgroup v2 cpu.max ("max 100000" or "150000 100000"): CPUs, or nullopt when unlimited/malformed.
std::optional<double> ParseCpuMax(std::string_view text);
// Parses cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us ("-1" is unlimited): CPUs, or nullopt.
std::optional<double> ParseCfsQuota(std::string_view quota, std::string_view period);

}  // namespace layerskip
