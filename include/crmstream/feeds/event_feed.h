// Runs an events feed (see feed_spec.h): every CSV row is mapped to one input
// event by the feed's field rules, encoded as the event JSON the engine
// reads from Kafka, and passed to an EventProcessor, so validation, dedup,
// features, models and outputs are exactly the engine's. A row that fails
// (CSV syntax, or a mapped event the validator rejects) becomes a dead letter
// carrying the original CSV line and its position (the file as topic, the
// line number as offset).
//
// Single-threaded; reuses its buffers, no allocation per row in steady state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "crmstream/common/status.h"
#include "crmstream/feeds/feed_spec.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/replay.h"

namespace crmstream::feeds {

// The counts of a replay (records = CSV rows). `progress(bytes done, total
// bytes)` is called about every 64k rows.
Result<pipeline::ReplayStats> RunEventFeed(
    const FeedSpec& spec, const std::filesystem::path& input, pipeline::EventProcessor* processor,
    const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace crmstream::feeds
