#include "crmstream/common/process_memory.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace crmstream {
namespace {

std::atomic<uint64_t> g_trims{0};
std::atomic<uint64_t> g_trimmed_bytes{0};

}  // namespace

int64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = -1;
  const int read = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (read != 2 || resident < 0) return -1;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t PeakResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      if (std::sscanf(line + 6, "%lld", &kib) != 1) kib = -1;
      break;
    }
  }
  std::fclose(f);
  return kib < 0 ? -1 : static_cast<int64_t>(kib) * 1024;
}

ResidentTrimmer::ResidentTrimmer(int64_t limit_bytes, std::chrono::milliseconds period,
                                 std::chrono::milliseconds min_gap)
    : limit_bytes_(limit_bytes), period_(period), min_gap_(min_gap) {
  thread_ = std::thread([this] { Loop(); });
}

ResidentTrimmer::~ResidentTrimmer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

uint64_t ResidentTrimmer::trims() { return g_trims.load(std::memory_order_relaxed); }
uint64_t ResidentTrimmer::trimmed_bytes() {
  return g_trimmed_bytes.load(std::memory_order_relaxed);
}

void ResidentTrimmer::Loop() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_allowed = Clock::now();
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, period_, [this] { return stop_; })) {
#if defined(__GLIBC__)
    const int64_t before = ResidentBytes();
    if (before < limit_bytes_ || Clock::now() < next_allowed) continue;
    malloc_trim(0);
    const int64_t returned = std::max<int64_t>(0, before - ResidentBytes());
    g_trims.fetch_add(1, std::memory_order_relaxed);
    g_trimmed_bytes.fetch_add(static_cast<uint64_t>(returned), std::memory_order_relaxed);
    next_allowed = Clock::now() + (returned < limit_bytes_ / 64 ? 16 * min_gap_ : min_gap_);
#endif
  }
}

}  // namespace crmstream
