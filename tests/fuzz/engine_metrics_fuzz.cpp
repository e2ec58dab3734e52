// libFuzzer target for the dashboard's reader of the engine's /metrics text
// (ParsePrometheusText) and the rates it derives (EngineRateTracker): the
// text comes from another process over HTTP, so any bytes may arrive.
// Neither may crash, read out of bounds or hit UB; every sample returned is
// a crmstream_ series with a name free of separators, and a reading is
// either absent or a finite number (the page shows it), the rate >= 0.
//
// Input: byte 0 picks where the text splits into two scrapes (a tenth of
// the rest per unit, modulo 11); the two are read 1 s apart.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "crmstream/dashboard/engine_metrics.h"

namespace {

using crmstream::dashboard::EngineReading;
using crmstream::dashboard::MetricSample;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckSamples(const std::vector<MetricSample>& samples) {
  for (const MetricSample& s : samples) {
    Check(s.name.rfind("crmstream_", 0) == 0);
    Check(s.name.find_first_of("{ \n") == std::string::npos);
    Check(s.labels.find('\n') == std::string::npos);
  }
}

void CheckReading(const EngineReading& r) {
  if (r.lag) Check(std::isfinite(*r.lag));
  if (r.events_per_second) Check(std::isfinite(*r.events_per_second) && *r.events_per_second >= 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = text.size() * (data[0] % 11) / 10;
  crmstream::dashboard::EngineRateTracker tracker;
  const auto first = crmstream::dashboard::ParsePrometheusText(text.substr(0, split));
  const auto second = crmstream::dashboard::ParsePrometheusText(text.substr(split));
  CheckSamples(first);
  CheckSamples(second);
  CheckReading(tracker.Update(1'000, first));
  CheckReading(tracker.Update(2'000, second));
  return 0;
}
