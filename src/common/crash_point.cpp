#include "crmstream/common/crash_point.h"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace crmstream::crash_point {
namespace internal {

const bool g_armed = [] {
  const char* spec = std::getenv(kEnvironmentVariable);
  return spec != nullptr && *spec != '\0';
}();

}  // namespace internal
namespace {

// Raw write(2): the process is about to end without flushing stdio.
void Say(const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

struct ArmedPoint {
  std::string name;
  uint64_t nth = 1;
  // "<name>:every:<n>": every nth visit, not only the first nth (a fault
  // point that keeps failing, for soak runs of the recovery it triggers).
  bool every = false;
  std::string error;  // non-empty: the variable is malformed
};

ArmedPoint Parse(std::string_view spec) {
  ArmedPoint p;
  const size_t colon = spec.rfind(':');
  p.name = std::string(spec.substr(0, colon));
  constexpr std::string_view kEvery = ":every";
  if (colon != std::string_view::npos && p.name.size() > kEvery.size() &&
      p.name.ends_with(kEvery)) {
    p.every = true;
    p.name.resize(p.name.size() - kEvery.size());
  }
  if (colon != std::string_view::npos) {
    const std::string_view count = spec.substr(colon + 1);
    const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), p.nth);
    if (ec != std::errc() || end != count.data() + count.size() || p.nth == 0) {
      p.error = "'" + std::string(count) + "' is not a positive count";
    }
  }
  if (p.name.empty()) p.error = "no point named";
  return p;
}

const ArmedPoint& Armed() {
  static const ArmedPoint armed = Parse(std::getenv(kEnvironmentVariable));
  if (!armed.error.empty()) {
    // Only tests set the variable: a typo must not pass as "never reached".
    Say(std::string(kEnvironmentVariable) + "=" + std::getenv(kEnvironmentVariable) + ": " +
        armed.error + " (expected <name>[:<nth>] or <name>:every:<n>)\n");
    std::_Exit(2);
  }
  return armed;
}

// Whether this visit of `name` is the armed point's nth (or, armed with
// "every", a multiple of it).
bool NthVisit(std::string_view name) {
  static std::atomic<uint64_t> visits{0};
  const ArmedPoint& armed = Armed();
  if (name != armed.name) return false;
  const uint64_t visit = visits.fetch_add(1) + 1;
  return armed.every ? visit % armed.nth == 0 : visit == armed.nth;
}

}  // namespace

void Reached(std::string_view name) {
  if (!NthVisit(name)) return;
  const ArmedPoint& armed = Armed();
  Say("crash point " + armed.name + " reached (visit " + std::to_string(armed.nth) +
      "): ending the process as a crash would\n");
  std::_Exit(kCrashPointExitStatus);
}

bool Fails(std::string_view name) {
  if (!NthVisit(name)) return false;
  const ArmedPoint& armed = Armed();
  Say("fault point " + armed.name + " reached (" + (armed.every ? "every " : "visit ") +
      std::to_string(armed.nth) + ")\n");
  return true;
}

}  // namespace crmstream::crash_point
