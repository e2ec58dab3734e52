#include "crmstream/feeds/series_feed.h"

#include <fstream>

#include "crmstream/feeds/csv_rows.h"
#include "crmstream/models/univariate_anomaly.h"

namespace crmstream::feeds {

namespace fs = std::filesystem;

bool IsNabFolder(const fs::path& input) {
  std::error_code ec;
  return fs::is_directory(input / "data", ec) &&
         fs::is_regular_file(input / "labels" / "combined_windows.json", ec) &&
         fs::is_regular_file(input / "config" / "profiles.json", ec);
}

Result<SeriesFeedReport> RunSeriesFeed(const FeedSpec& spec, const fs::path& input,
                                       const fs::path& out_dir) {
  if (spec.kind != FeedKind::kSeries) {
    return Status::InvalidArgument(spec.file + ": not a series feed");
  }
  SeriesFeedReport report;
  if (IsNabFolder(input)) {
    CRM_ASSIGN_OR_RETURN(evaluation::NabReport nab,
                         evaluation::EvaluateNabDetector(
                             input, spec.series.detector_name,
                             [&](const evaluation::NabSeries& s, std::span<double> scores) {
                               models::UnivariateAnomalyDetector detector;
                               for (size_t i = 0; i < s.values.size(); ++i) {
                                 scores[i] = detector.Score(s.epoch_seconds[i], s.values[i]);
                                 report.max_score = std::max(report.max_score, scores[i]);
                               }
                             },
                             out_dir));
    report.series = nab.files;
    report.rows = nab.points;
    report.nab = std::move(nab);
    return report;
  }

  CRM_ASSIGN_OR_RETURN(CsvRows rows, CsvRows::Open(input));
  CRM_ASSIGN_OR_RETURN(size_t ts_column, rows.Column(spec.series.timestamp_column));
  CRM_ASSIGN_OR_RETURN(size_t value_column, rows.Column(spec.series.value_column));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  const fs::path out_path = out_dir / (spec.series.detector_name + "_" + input.filename().string());
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("cannot write " + out_path.string());
  out << "timestamp,value,anomaly_score\n";
  models::UnivariateAnomalyDetector detector;
  report.series = 1;
  while (true) {
    CRM_ASSIGN_OR_RETURN(bool more, rows.Next());
    if (!more) break;
    if (!rows.error().empty()) {
      return Status::Corruption(rows.path() + ":" + std::to_string(rows.line_number()) + ": " +
                                rows.error());
    }
    double value = 0;
    double score = 0;
    if (ParseNumber(rows.cell(value_column), &value)) {
      score = detector.Score(static_cast<int64_t>(report.rows), value);
    } else {
      ++report.skipped_rows;
    }
    report.max_score = std::max(report.max_score, score);
    ++report.rows;
    out << rows.cell(ts_column) << ',' << rows.cell(value_column) << ',' << score << '\n';
  }
  out.close();
  if (!out) return Status::IOError("cannot write " + out_path.string());
  return report;
}

}  // namespace crmstream::feeds
