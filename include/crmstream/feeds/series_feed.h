// Runs a series feed (see feed_spec.h): metric series of `timestamp,value`
// rows scored by the streaming univariate anomaly detector, one fresh
// detector per series, each score from the past only.
//
//  - A CSV file: writes `<out>/<detector>_<file>` with the columns
//    timestamp,value,anomaly_score.
//  - A NAB-layout folder (data/, labels/combined_windows.json,
//    config/profiles.json): scores every series, writes the scores in NAB's
//    results layout under `<out>`, and scores them with the NAB profiles.
//
// Single-threaded.
#pragma once

#include <filesystem>
#include <optional>

#include "crmstream/common/status.h"
#include "crmstream/evaluation/nab.h"
#include "crmstream/feeds/feed_spec.h"

namespace crmstream::feeds {

struct SeriesFeedReport {
  uint64_t series = 0;
  uint64_t rows = 0;
  uint64_t skipped_rows = 0;  // a value that is not a number: scored 0, not learnt
  double max_score = 0.0;
  // Set when the input was a NAB-layout folder.
  std::optional<evaluation::NabReport> nab;
};

bool IsNabFolder(const std::filesystem::path& input);

Result<SeriesFeedReport> RunSeriesFeed(const FeedSpec& spec, const std::filesystem::path& input,
                                       const std::filesystem::path& out_dir);

}  // namespace crmstream::feeds
