// ResidentTrimmer returns the C library's free pages once the resident set
// reaches its limit, and leaves the process alone below it.
#include "crmstream/common/process_memory.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "support/test_support.h"

namespace crmstream {
namespace {

constexpr size_t kBlock = 4096;
constexpr size_t kBlocks = 32768;  // 128 MiB

// 128 MiB in 4 KiB blocks, each touched; then 15 of every 16 freed: 120 MiB
// free in holes between kept blocks, which glibc does not give back by itself
// (only the top of the heap), so they stay resident.
std::vector<char*> FragmentedHeap() {
  std::vector<char*> blocks(kBlocks);
  for (char*& b : blocks) {
    b = new char[kBlock];
    std::memset(b, 1, kBlock);
  }
  std::vector<char*> kept;
  for (size_t i = 0; i < kBlocks; ++i) {
    if (i % 16 == 15) {
      kept.push_back(blocks[i]);
    } else {
      delete[] blocks[i];
    }
  }
  return kept;
}

void Release(const std::vector<char*>& kept) {
  for (char* b : kept) delete[] b;
}

// Waits up to 10 s for `done`.
template <class F>
bool Eventually(F done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST_CASE("A resident set at its limit gets the heap's free pages back", "[common][memory]") {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
  CRMSTREAM_SKIP("malloc_trim is glibc's, and the sanitizers replace the allocator");
#endif
  const std::vector<char*> kept = FragmentedHeap();
  const int64_t fragmented = ResidentBytes();
  REQUIRE(fragmented > 0);
  const uint64_t trims = ResidentTrimmer::trims();
  {
    // Below the limit: no trim, whatever the time given.
    ResidentTrimmer idle(fragmented + (int64_t{1} << 30), std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(ResidentTrimmer::trims() == trims);
  }
  {
    ResidentTrimmer trimmer(fragmented / 2, std::chrono::milliseconds(10));
    REQUIRE(Eventually([&] { return ResidentTrimmer::trims() > trims; }));
  }
  const int64_t trimmed = ResidentBytes();
  INFO("resident " << fragmented << " bytes fragmented, " << trimmed << " after the trim");
  // Most of the 120 MiB of holes went back (whole pages inside free chunks).
  CHECK(fragmented - trimmed > int64_t{64} << 20);
  CHECK(ResidentTrimmer::trimmed_bytes() > uint64_t{64} << 20);
  Release(kept);
}

}  // namespace
}  // namespace crmstream
