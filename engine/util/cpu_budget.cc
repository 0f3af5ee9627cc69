#include "engine/util/cpu_budget.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace layerskip {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The cgroup paths of this process from /proc/self/cgroup: for v2 ("0::/a/b") under key "", for v1 under
// each controller name ("4:cpu,cpuacct:/a" -> "cpu", "cpuacct").
std::vector<std::pair<std::string, std::string>> ProcessCgroups() {
  std::vector<std::pair<std::string, std::string>> out;
  const auto text = ReadFile("/proc/self/cgroup");
  if (!text) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (f[1].empty()) out.emplace_back("", std::string(f[2]));
    for (absl::string_view c : absl::StrSplit(f[1], ',', absl::SkipEmpty())) out.emplace_back(std::string(c), std::string(f[2]));
  }
  return out;
}

// dir, then its ancestors up to root (a container sees its own cgroup as root; the host path may not exist).
std::vector<std::string> SelfAndAncestors(const std::string& root, std::string path) {
  std::vector<std::string> dirs;
  while (!path.empty() && path != "/") {
    dirs.push_back(root + path);
    path = path.substr(0, path.rfind('/'));
  }
  dirs.push_back(root);
  return dirs;
}

void TakeMin(std::optional<double>& best, std::optional<double> v) {
  if (v && (!best || *v < *best)) best = v;
}

}  // namespace

static absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::optional<double> ParseCpuMax(std::string_view text) {
  std::vector<absl::string_view> f = absl::StrSplit(absl::StripAsciiWhitespace(Absl(text)), ' ', absl::SkipEmpty());
  double quota = 0, period = 0;
  if (f.size() != 2 || f[0] == "max" || !absl::SimpleAtod(f[0], &quota) || !absl::SimpleAtod(f[1], &period) ||
      quota <= 0 || period <= 0)
    return std::nullopt;
  return quota / period;
}

std::optional<double> ParseCfsQuota(std::string_view quota, std::string_view period) {
  double q = 0, p = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(Absl(quota)), &q) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(Absl(period)), &p) ||
      q <= 0 || p <= 0)
    return std::nullopt;
  return q / p;
}

std::optional<double> CgroupCpuLimit() {
  std::optional<double> best;
  for (const auto& [controller, path] : ProcessCgroups()) {
    if (controller.empty()) {
      for (const std::string& dir : SelfAndAncestors("/sys/fs/cgroup", path))
        if (auto t = ReadFile(dir + "/cpu.max")) TakeMin(best, ParseCpuMax(*t));
    } else if (controller == "cpu") {
      for (const char* root : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"})
        for (const std::string& dir : SelfAndAncestors(root, path)) {
          auto q = ReadFile(dir + "/cpu.cfs_quota_us"), p = ReadFile(dir + "/cpu.cfs_period_us");
          if (q && p) TakeMin(best, ParseCfsQuota(*q, *p));
        }
    }
  }
  return best;
}

int DefaultThreadCount() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (auto limit = CgroupCpuLimit()) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*limit - 1e-9))));
  return cpus;
}

}  // namespace layerskip
