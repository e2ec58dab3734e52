#include "crmstream/common/process_cpus.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>
#include <thread>

namespace crmstream {
namespace {

// The calling thread's cgroup path under the hierarchy that holds the CPU
// controller: cgroup v2's ("0::/a/b") where it is mounted alone, else v1's
// "cpu" controller ("4:cpu,cpuacct:/a/b"); nullopt without /proc.
struct CpuCgroup {
  bool v2 = false;
  std::string path;
};

std::optional<CpuCgroup> FindCpuCgroup() {
  const bool unified = std::ifstream("/sys/fs/cgroup/cgroup.controllers").good();
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    if (unified && line.starts_with("0::")) return CpuCgroup{true, line.substr(second + 1)};
    if (unified) continue;
    // v1: "cpu" among the comma-separated controllers.
    for (size_t at = 0; at <= controllers.size();) {
      const size_t comma = std::min(controllers.find(',', at), controllers.size());
      if (controllers.compare(at, comma - at, "cpu") == 0) {
        return CpuCgroup{false, line.substr(second + 1)};
      }
      at = comma + 1;
    }
  }
  return std::nullopt;
}

// The quota of one cgroup directory as a cpu.max line, or "".
std::string CpuMaxOf(const CpuCgroup& group, const std::string& dir) {
  std::string line;
  if (group.v2) {
    std::ifstream in("/sys/fs/cgroup" + dir + "/cpu.max");
    std::getline(in, line);
    return line;
  }
  std::ifstream quota("/sys/fs/cgroup/cpu" + dir + "/cpu.cfs_quota_us");
  std::ifstream period("/sys/fs/cgroup/cpu" + dir + "/cpu.cfs_period_us");
  std::string q, p;
  if (!std::getline(quota, q) || !std::getline(period, p)) return "";
  return q + " " + p;  // -1 (none) is not a quota CoresFromCpuMax takes
}

// The smallest quota of the cgroup and its ancestors: each one's limit
// applies to everything under it.
std::optional<int> CgroupQuotaCores() {
  const std::optional<CpuCgroup> group = FindCpuCgroup();
  if (!group) return std::nullopt;
  std::optional<int> least;
  std::string dir = group->path == "/" ? "" : group->path;
  while (true) {
    const std::optional<int> cores = CoresFromCpuMax(CpuMaxOf(*group, dir));
    if (cores && (!least || *cores < *least)) least = cores;
    if (dir.empty()) break;
    const size_t slash = dir.rfind('/');
    dir.resize(slash == std::string::npos ? 0 : slash);
  }
  return least;
}

}  // namespace

std::optional<int> CoresFromCpuMax(std::string_view cpu_max) {
  const size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view quota_text = cpu_max.substr(0, space);
  std::string_view period_text = cpu_max.substr(space + 1);
  while (!period_text.empty() && (period_text.back() == '\n' || period_text.back() == ' ')) {
    period_text.remove_suffix(1);
  }
  long long quota = 0, period = 0;
  const auto q = std::from_chars(quota_text.data(), quota_text.data() + quota_text.size(), quota);
  const auto p =
      std::from_chars(period_text.data(), period_text.data() + period_text.size(), period);
  if (q.ec != std::errc{} || q.ptr != quota_text.data() + quota_text.size() ||
      p.ec != std::errc{} || p.ptr != period_text.data() + period_text.size() || quota <= 0 ||
      period <= 0) {
    return std::nullopt;  // "max": no quota; anything else: not understood
  }
  return static_cast<int>(std::max<long long>(1, (quota + period - 1) / period));
}

int UsableCores() {
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  if (const std::optional<int> quota = CgroupQuotaCores(); quota && *quota < cores) {
    cores = *quota;
  }
  return std::max(1, cores);
}

}  // namespace crmstream
