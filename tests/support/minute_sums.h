// The reference for the minute metrics: revenue, tickets and logins summed
// per event-time minute straight from decoded events, as a batch job would.
#pragma once

#include <array>
#include <cstdint>
#include <map>

#include "crmstream/ingest/event.h"

namespace crmstream::testing {

// minute start (ms) -> {revenue, tickets (support tickets and complaints), logins}
using MinuteSumsByMinute = std::map<int64_t, std::array<double, 3>>;

inline void AddToMinuteSums(const ingest::Event& e, MinuteSumsByMinute* sums) {
  auto& s = (*sums)[e.timestamp_ms - ((e.timestamp_ms % 60'000) + 60'000) % 60'000];
  if (e.type == ingest::EventType::kPurchase) s[0] += e.amount;
  if (e.type == ingest::EventType::kSupportTicket || e.type == ingest::EventType::kComplaint) {
    s[1] += 1.0;
  }
  if (e.type == ingest::EventType::kLogin) s[2] += 1.0;
}

}  // namespace crmstream::testing
