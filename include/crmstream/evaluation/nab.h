// Runs an anomaly detector over the Numenta Anomaly Benchmark corpus (the
// data files, labels/combined_windows.json and config/profiles.json of a NAB
// checkout) and scores it with NabScorer, for `crmstream eval nab` and the
// tests. Optionally writes the per-row scores in NAB's results layout,
// <out>/<category>/<detector>_<file>.csv with columns
// timestamp,value,anomaly_score, so NAB's own scorer can check ours.
//
// Functions here are reentrant; nothing is shared between calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/evaluation/nab_scorer.h"

namespace crmstream::evaluation {

// One NAB data file, loaded.
struct NabSeries {
  std::string relative_path;            // "realKnownCause/nyc_taxi.csv"
  std::vector<std::string> timestamps;  // as written in the file
  std::vector<int64_t> epoch_seconds;
  std::vector<double> values;
  std::vector<NabWindow> windows;
};

struct NabCorpus {
  std::vector<NabSeries> series;  // sorted by relative path
  std::vector<NabCostProfile> profiles;
};

// Loads <nab_dir>/data/**.csv, labels/combined_windows.json and
// config/profiles.json. Every window edge must be a timestamp of its file.
Result<NabCorpus> LoadNabCorpus(const std::filesystem::path& nab_dir);

// The fixed split of the corpus: changes to the detector are judged on the
// tuning half, apart from the held-out files it is also reported on. Within
// each category folder, files in path order alternate, the 0th, 2nd, ... in
// the tuning half: 31 files (57 windows) tune, 27 (59 windows) are held out.
enum class NabHalf { kTune, kHeldOut };
NabHalf NabSplitHalf(size_t position_in_category);

// Fills `scores` (same length as the series) for one file, from the past
// only; a fresh detector per call.
using NabDetectorFn = std::function<void(const NabSeries& series, std::span<double> scores)>;

// The three profile scores of a subset of the files.
struct NabSubsetScore {
  double standard = 0.0;
  double low_fp = 0.0;
  double low_fn = 0.0;
  size_t files = 0;
  size_t windows = 0;
};

struct NabReport {
  std::string detector;
  double standard = 0.0;  // normalised scores, 0 = never fires, 100 = perfect
  double low_fp = 0.0;
  double low_fn = 0.0;
  std::vector<NabProfileScore> profiles;  // details, including each best threshold
  size_t files = 0;
  size_t points = 0;
  size_t windows = 0;
  // NAB's rule (threshold swept per profile) on each half of NabSplitHalf,
  // and the held-out half at the thresholds the tuning half chose.
  NabSubsetScore tune_half;
  NabSubsetScore held_out_half;
  NabSubsetScore held_out_at_tune_thresholds;
};

// Scores `detector` on the corpus under `data_dir` (a folder holding nab/, or
// a NAB checkout itself).
Result<NabReport> EvaluateNabDetector(const std::filesystem::path& data_dir,
                                      const std::string& detector_name,
                                      const NabDetectorFn& detector,
                                      const std::optional<std::filesystem::path>& results_out = {});

// The project's detector: models::UnivariateAnomalyDetector with its default
// options, named "crmstream".
Result<NabReport> EvaluateNab(const std::filesystem::path& data_dir,
                              const std::optional<std::filesystem::path>& results_out = {});

// A table of the three profile scores beside the published NAB figures.
void PrintNabReport(const NabReport& report, std::ostream& os);

}  // namespace crmstream::evaluation
