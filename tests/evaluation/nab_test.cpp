#include "crmstream/evaluation/nab.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

TEST_CASE("NAB corpus loads with every window on a row", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto corpus = LoadNabCorpus(data / "nab");
  REQUIRE_OK(corpus);
  CHECK(corpus->series.size() == 58);
  size_t points = 0, windows = 0;
  for (const NabSeries& s : corpus->series) {
    points += s.values.size();
    windows += s.windows.size();
  }
  // The data files hold 365,558 rows (wc -l minus headers).
  CHECK(points == 365558);
  CHECK(windows == 116);
  CHECK(corpus->profiles.size() == 3);
}

TEST_CASE("NAB corpus: null detector scores 0 and perfect detector 100", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto null_report = EvaluateNabDetector(data, "null", [](const NabSeries&, std::span<double> s) {
    std::fill(s.begin(), s.end(), 0.5);
  });
  REQUIRE_OK(null_report);
  CHECK(null_report->standard == Approx(0.0).margin(1e-9));
  CHECK(null_report->low_fp == Approx(0.0).margin(1e-9));
  CHECK(null_report->low_fn == Approx(0.0).margin(1e-9));

  auto perfect =
      EvaluateNabDetector(data, "perfect", [](const NabSeries& s, std::span<double> out) {
        std::fill(out.begin(), out.end(), 0.0);
        for (const NabWindow& w : s.windows) out[w.first_row] = 1.0;
      });
  REQUIRE_OK(perfect);
  CHECK(perfect->standard == Approx(100.0).epsilon(1e-9));
  CHECK(perfect->low_fp == Approx(100.0).epsilon(1e-9));
  CHECK(perfect->low_fn == Approx(100.0).epsilon(1e-9));
}

// NAB's "windowed Gaussian" baseline, written here independently of the
// project's detector: the value's two-sided Gaussian tail under the mean and
// standard deviation of the previous 1000 values, as 1 - Q(|z|).
void WindowedGaussian(const NabSeries& s, std::span<double> out) {
  constexpr size_t kWindow = 1000;
  double sum = 0.0, sum_sq = 0.0;
  for (size_t i = 0; i < s.values.size(); ++i) {
    const double x = s.values[i];
    const size_t n = std::min(i, kWindow);
    double score = 0.0;
    if (n > 0) {
      const double mean = sum / n;
      double sd = std::sqrt(std::max(0.0, sum_sq / n - mean * mean));
      if (sd == 0.0) sd = 1e-6;
      score = 1.0 - 0.5 * std::erfc(std::abs(x - mean) / sd / std::sqrt(2.0));
    }
    out[i] = score;
    sum += x;
    sum_sq += x * x;
    if (i >= kWindow) {
      sum -= s.values[i - kWindow];
      sum_sq -= s.values[i - kWindow] * s.values[i - kWindow];
    }
  }
}

TEST_CASE("NAB scorer reproduces the published windowed-Gaussian figures", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto report = EvaluateNabDetector(data, "windowedGaussian", WindowedGaussian);
  REQUIRE_OK(report);
  // Published: 39.6 / 20.9 / 47.4. NAB's reference run quantises the tail
  // probability (a 0.1-sd lookup table), hence the tolerance.
  CHECK(report->standard == Approx(39.6).margin(2.0));
  CHECK(report->low_fp == Approx(20.9).margin(2.0));
  CHECK(report->low_fn == Approx(47.4).margin(2.0));
}

TEST_CASE("NAB split: halves alternate within each category", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto corpus = LoadNabCorpus(data / "nab");
  REQUIRE_OK(corpus);
  // Recomputed here from the paths: the k-th file (0-based, path order) of
  // each category folder tunes when k is even.
  std::map<std::string, size_t> seen;
  size_t tune_files = 0, tune_windows = 0, held_windows = 0;
  for (const NabSeries& s : corpus->series) {
    const size_t k = seen[s.relative_path.substr(0, s.relative_path.find('/'))]++;
    const bool tune = NabSplitHalf(k) == NabHalf::kTune;
    CHECK(tune == (k % 2 == 0));
    tune_files += tune;
    (tune ? tune_windows : held_windows) += s.windows.size();
  }
  CHECK(seen.size() == 7);
  CHECK(tune_files == 31);
  CHECK(tune_windows == 57);
  CHECK(held_windows == 59);
}

TEST_CASE("crmstream detector on the NAB corpus", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  testing::ScratchDir out;
  auto report = EvaluateNab(data, out.path());
  REQUIRE_OK(report);
  std::ostringstream table;
  PrintNabReport(*report, table);
  INFO(table.str());
  CHECK(report->files == 58);
  // Above the published Numenta HTM figures (70.1 / 63.1 / 74.3) on the
  // standard and low-FN profiles; HTM keeps the edge on low FP.
  CHECK(report->standard >= 70.1);
  CHECK(report->low_fn >= 74.3);
  // The figures this detector reaches (71.1 / 62.7 / 75.8); the published
  // leaders are ARTime 74.9 / 65.1 / 80.4, HTM 70.1 / 63.1 / 74.3, CAD OSE
  // 69.9 / 67.0 / 73.2, KNN CAD 58.0.
  CHECK(report->standard >= 70.9);
  CHECK(report->low_fp >= 62.5);
  CHECK(report->low_fn >= 75.6);
  // The halves of NabSplitHalf (changes are judged on the tuning half): the
  // tuning half scores 72.8 / 65.6 / 77.2, the held-out half 69.9 / 60.8 /
  // 74.9 under NAB's rule and 65.5 / 57.1 / 70.2 at the tuning half's
  // thresholds.
  CHECK(report->tune_half.files + report->held_out_half.files == 58);
  CHECK(report->tune_half.windows + report->held_out_half.windows == 116);
  CHECK(report->tune_half.standard >= 72.6);
  CHECK(report->held_out_half.standard >= 69.7);
  CHECK(report->held_out_half.low_fp >= 60.6);
  CHECK(report->held_out_half.low_fn >= 74.7);
  CHECK(report->held_out_at_tune_thresholds.standard >= 65.3);
  CHECK(report->files == 58);
  // The README's claim, against the published figure (NAB scoreboard,
  // Numenta HTM, standard profile), not against this detector's own past.
  constexpr double kPublishedHtmStandard = 70.1;
  CHECK(report->standard > kPublishedHtmStandard);

  // Per-row results in NAB's layout, one row per data row.
  std::ifstream csv(out.path() / "realKnownCause" / "crmstream_nyc_taxi.csv");
  REQUIRE(csv.good());
  std::string line;
  std::getline(csv, line);
  CHECK(line == "timestamp,value,anomaly_score");
  size_t rows = 0;
  while (std::getline(csv, line)) ++rows;
  CHECK(rows == 10320);
}

}  // namespace
}  // namespace crmstream::evaluation
