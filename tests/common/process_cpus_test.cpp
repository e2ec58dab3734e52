// The cores a process may use (common/process_cpus.h): its affinity mask
// and its cgroup's CPU quota, not the machine's CPU count.
#include "crmstream/common/process_cpus.h"

#include <sched.h>

#include <catch2/catch.hpp>
#include <thread>

namespace crmstream {
namespace {

TEST_CASE("A cgroup's cpu.max gives its whole cores, rounded up", "[common]") {
  CHECK(CoresFromCpuMax("max 100000") == std::nullopt);
  CHECK(CoresFromCpuMax("100000 100000") == 1);
  CHECK(CoresFromCpuMax("50000 100000") == 1);
  CHECK(CoresFromCpuMax("150000 100000\n") == 2);
  CHECK(CoresFromCpuMax("400000 100000") == 4);
  // cgroup v1's "no quota", and what it cannot read.
  CHECK(CoresFromCpuMax("-1 100000") == std::nullopt);
  CHECK(CoresFromCpuMax("") == std::nullopt);
  CHECK(CoresFromCpuMax("100000") == std::nullopt);
  CHECK(CoresFromCpuMax("1e5 100000") == std::nullopt);
  CHECK(CoresFromCpuMax("100000 0") == std::nullopt);
}

TEST_CASE("A thread pinned to one CPU may use one core, whatever the machine has", "[common]") {
  const int unpinned = UsableCores();
  CHECK(unpinned >= 1);
  CHECK(unpinned <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  int pinned = 0, set = -1;
  std::thread([&] {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    REQUIRE(sched_getaffinity(0, sizeof mask, &mask) == 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &mask)) ++cpu;  // one the test may run on
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    set = sched_setaffinity(0, sizeof one, &one);
    pinned = UsableCores();
  }).join();
  REQUIRE(set == 0);
  CHECK(pinned == 1);
  // The mask was the thread's own: this one still has what it had.
  CHECK(UsableCores() == unpinned);
}

}  // namespace
}  // namespace crmstream
