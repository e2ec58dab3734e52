// The cores this process may run on, as the kernel limits them: what
// "one thread per core" should mean. std::thread::hardware_concurrency()
// counts the machine's online CPUs, so a process pinned with `taskset` or
// confined by a container's CPU quota would otherwise start more threads
// than it has cores, and each batch's fork-join would wait on threads
// sharing one core.
#pragma once

#include <optional>
#include <string_view>

namespace crmstream {

// The cores the calling thread may use: the CPUs of its affinity mask,
// fewer where its cgroup or an ancestor's has a CPU quota (v2's `cpu.max`,
// v1's `cpu.cfs_quota_us`), rounded up; at least 1. Falls back to hardware_concurrency() where
// neither is readable.
int UsableCores();

// The whole cores a cgroup v2 `cpu.max` line grants ("QUOTA PERIOD" in
// microseconds, or "max PERIOD": none), rounded up; nullopt for no quota or
// a line it cannot read.
std::optional<int> CoresFromCpuMax(std::string_view cpu_max);

}  // namespace crmstream
