#include "crmstream/evaluation/nab.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <ostream>
#include <sstream>

#include "crmstream/models/univariate_anomaly.h"

namespace crmstream::evaluation {
namespace {

namespace fs = std::filesystem;

// Just enough JSON for NAB's two configuration files: objects, arrays,
// strings without escapes beyond \" and \\, numbers.
struct JsonValue {
  enum class Kind { kNull, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  double number = 0.0;
  std::string text;
  std::vector<std::string> names;  // object member names, parallel to items
  std::vector<JsonValue> items;
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view in) : in_(in) {}

  Result<JsonValue> ParseDocument() {
    JsonValue v;
    CRM_RETURN_NOT_OK(Parse(&v, 0));
    SkipSpace();
    if (pos_ != in_.size()) return Error("trailing characters");
    return v;
  }

 private:
  Status Error(std::string_view what) const {
    return Status::Corruption("JSON: " + std::string(what) + " at byte " + std::to_string(pos_));
  }
  void SkipSpace() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\n' || in_[pos_] == '\r' || in_[pos_] == '\t')) {
      ++pos_;
    }
  }
  Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    out->clear();
    while (pos_ < in_.size() && in_[pos_] != '"') {
      if (in_[pos_] == '\\') {
        if (++pos_ >= in_.size()) break;
        if (in_[pos_] != '"' && in_[pos_] != '\\' && in_[pos_] != '/') {
          return Error("unsupported escape");
        }
      }
      out->push_back(in_[pos_++]);
    }
    if (pos_ >= in_.size()) return Error("unterminated string");
    ++pos_;
    return Status::OK();
  }
  Status Parse(JsonValue* v, int depth) {
    if (depth > 32) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= in_.size()) return Error("unexpected end");
    const char c = in_[pos_];
    if (c == '"') {
      v->kind = JsonValue::Kind::kString;
      return ParseString(&v->text);
    }
    if (c == '[' || c == '{') {
      const bool object = c == '{';
      v->kind = object ? JsonValue::Kind::kObject : JsonValue::Kind::kArray;
      ++pos_;
      SkipSpace();
      if (pos_ < in_.size() && in_[pos_] == (object ? '}' : ']')) {
        ++pos_;
        return Status::OK();
      }
      while (true) {
        if (object) {
          SkipSpace();
          if (pos_ >= in_.size() || in_[pos_] != '"') return Error("expected a member name");
          v->names.emplace_back();
          CRM_RETURN_NOT_OK(ParseString(&v->names.back()));
          SkipSpace();
          if (pos_ >= in_.size() || in_[pos_] != ':') return Error("expected ':'");
          ++pos_;
        }
        v->items.emplace_back();
        CRM_RETURN_NOT_OK(Parse(&v->items.back(), depth + 1));
        SkipSpace();
        if (pos_ >= in_.size()) return Error("unexpected end");
        if (in_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (in_[pos_] == (object ? '}' : ']')) {
          ++pos_;
          return Status::OK();
        }
        return Error("expected ',' or a closing bracket");
      }
    }
    if (in_.substr(pos_, 4) == "null") {
      pos_ += 4;
      return Status::OK();
    }
    double d = 0.0;
    auto [ptr, ec] = std::from_chars(in_.data() + pos_, in_.data() + in_.size(), d);
    if (ec != std::errc()) return Error("unexpected character");
    pos_ = static_cast<size_t>(ptr - in_.data());
    v->kind = JsonValue::Kind::kNumber;
    v->number = d;
    return Status::OK();
  }

  std::string_view in_;
  size_t pos_ = 0;
};

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read " + path.string());
  return ss.str();
}

Result<JsonValue> ReadJson(const fs::path& path) {
  CRM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto parsed = JsonParser(text).ParseDocument();
  if (!parsed.ok()) return parsed.status().WithContext(path.string());
  return parsed;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "YYYY-MM-DD HH:MM:SS" with an optional fraction, which NAB's windows carry
// and its data files do not; seconds since the epoch, UTC.
std::optional<int64_t> ParseTimestamp(std::string_view s) {
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  auto number = [&](size_t at, size_t len) -> std::optional<int64_t> {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + at, s.data() + at + len, v);
    if (ec != std::errc() || p != s.data() + at + len) return std::nullopt;
    return v;
  };
  auto y = number(0, 4), mo = number(5, 2), d = number(8, 2), h = number(11, 2), mi = number(14, 2),
       se = number(17, 2);
  if (!y || !mo || !d || !h || !mi || !se || *mo < 1 || *mo > 12 || *d < 1 || *d > 31) {
    return std::nullopt;
  }
  return DaysFromCivil(*y, *mo, *d) * 86400 + *h * 3600 + *mi * 60 + *se;
}

Status ReadSeriesCsv(const fs::path& path, NabSeries* series) {
  CRM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string_view rest(text);
  bool header = true;
  size_t line_no = 0;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (header) {
      header = false;
      if (line.substr(0, 9) == "timestamp") continue;
    }
    const size_t comma = line.find(',');
    const auto where = [&] { return path.string() + ":" + std::to_string(line_no); };
    if (comma == std::string_view::npos) return Status::Corruption(where() + ": no comma");
    std::string_view ts = line.substr(0, comma);
    std::string_view val = line.substr(comma + 1);
    auto seconds = ParseTimestamp(ts);
    if (!seconds) return Status::Corruption(where() + ": bad timestamp");
    double v = 0.0;
    auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
    if (ec != std::errc() || p != val.data() + val.size() || !std::isfinite(v)) {
      return Status::Corruption(where() + ": bad value");
    }
    series->timestamps.emplace_back(ts);
    series->epoch_seconds.push_back(*seconds);
    series->values.push_back(v);
  }
  return Status::OK();
}

std::optional<size_t> FindRow(const NabSeries& s, int64_t seconds) {
  // The first matching row, as NAB does (timestamps.index): one file
  // (machine_temperature_system_failure) has a timestamp that goes backwards.
  auto it = std::find(s.epoch_seconds.begin(), s.epoch_seconds.end(), seconds);
  if (it == s.epoch_seconds.end()) return std::nullopt;
  return static_cast<size_t>(it - s.epoch_seconds.begin());
}

Status AttachWindows(const JsonValue& windows_json, NabCorpus* corpus) {
  if (windows_json.kind != JsonValue::Kind::kObject) {
    return Status::Corruption("combined_windows.json: not an object");
  }
  std::map<std::string, const JsonValue*> by_file;
  for (size_t i = 0; i < windows_json.names.size(); ++i) {
    by_file[windows_json.names[i]] = &windows_json.items[i];
  }
  for (NabSeries& s : corpus->series) {
    auto it = by_file.find(s.relative_path);
    if (it == by_file.end()) {
      return Status::Corruption("combined_windows.json has no entry for " + s.relative_path);
    }
    for (const JsonValue& w : it->second->items) {
      if (w.kind != JsonValue::Kind::kArray || w.items.size() != 2 ||
          w.items[0].kind != JsonValue::Kind::kString ||
          w.items[1].kind != JsonValue::Kind::kString) {
        return Status::Corruption("combined_windows.json: bad window for " + s.relative_path);
      }
      auto begin = ParseTimestamp(w.items[0].text), end = ParseTimestamp(w.items[1].text);
      if (!begin || !end) return Status::Corruption("bad window timestamp in " + s.relative_path);
      auto first = FindRow(s, *begin), last = FindRow(s, *end);
      if (!first || !last || *first > *last) {
        return Status::Corruption("window edge of " + s.relative_path + " is not one of its rows");
      }
      s.windows.push_back({*first, *last});
    }
  }
  return Status::OK();
}

Result<std::vector<NabCostProfile>> ReadProfiles(const JsonValue& json) {
  if (json.kind != JsonValue::Kind::kObject)
    return Status::Corruption("profiles.json: not an object");
  std::vector<NabCostProfile> out;
  for (size_t i = 0; i < json.names.size(); ++i) {
    const JsonValue* matrix = nullptr;
    for (size_t j = 0; j < json.items[i].names.size(); ++j) {
      if (json.items[i].names[j] == "CostMatrix") matrix = &json.items[i].items[j];
    }
    if (matrix == nullptr) return Status::Corruption("profiles.json: no CostMatrix");
    NabCostProfile p;
    p.name = json.names[i];
    int found = 0;
    for (size_t j = 0; j < matrix->names.size(); ++j) {
      const std::string& key = matrix->names[j];
      const double v = matrix->items[j].number;
      if (key == "tpWeight") p.tp_weight = v, ++found;
      if (key == "fpWeight") p.fp_weight = v, ++found;
      if (key == "fnWeight") p.fn_weight = v, ++found;
    }
    if (found != 3) return Status::Corruption("profiles.json: incomplete CostMatrix for " + p.name);
    out.push_back(std::move(p));
  }
  return out;
}

fs::path ResolveNabDir(const fs::path& data_dir) {
  if (fs::exists(data_dir / "labels" / "combined_windows.json")) return data_dir;
  return data_dir / "nab";
}

Status WriteResultsCsv(const fs::path& out_dir, const std::string& detector, const NabSeries& s,
                       std::span<const double> scores) {
  const fs::path rel(s.relative_path);
  const fs::path dir = out_dir / rel.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  const fs::path path = dir / (detector + "_" + rel.filename().string());
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::IOError("cannot write " + path.string());
  std::string line;
  out << "timestamp,value,anomaly_score\n";
  char buf[64];
  for (size_t i = 0; i < scores.size(); ++i) {
    line.assign(s.timestamps[i]);
    line.push_back(',');
    auto r = std::to_chars(buf, buf + sizeof(buf), s.values[i]);
    line.append(buf, r.ptr);
    line.push_back(',');
    r = std::to_chars(buf, buf + sizeof(buf), scores[i]);
    line.append(buf, r.ptr);
    line.push_back('\n');
    out << line;
  }
  if (!out) return Status::IOError("cannot write " + path.string());
  return Status::OK();
}

NabSubsetScore Subset(const std::vector<NabProfileScore>& profiles, const NabScorer& scorer) {
  NabSubsetScore out;
  for (const NabProfileScore& p : profiles) {
    if (p.profile == "standard") out.standard = p.normalized;
    if (p.profile == "reward_low_FP_rate") out.low_fp = p.normalized;
    if (p.profile == "reward_low_FN_rate") out.low_fn = p.normalized;
  }
  out.files = scorer.files();
  out.windows = scorer.windows();
  return out;
}

struct PublishedNabScore {
  const char* detector;
  double standard, low_fp, low_fn;  // NaN where not quoted
};

}  // namespace

NabHalf NabSplitHalf(size_t position_in_category) {
  return position_in_category % 2 == 0 ? NabHalf::kTune : NabHalf::kHeldOut;
}

Result<NabCorpus> LoadNabCorpus(const fs::path& nab_dir) {
  NabCorpus corpus;
  const fs::path data = nab_dir / "data";
  std::error_code ec;
  if (!fs::is_directory(data, ec))
    return Status::NotFound("no NAB data folder at " + data.string());
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(data, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".csv") files.push_back(it->path());
  }
  if (ec) return Status::IOError("listing " + data.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    NabSeries s;
    s.relative_path = fs::relative(f, data).generic_string();
    CRM_RETURN_NOT_OK(ReadSeriesCsv(f, &s));
    corpus.series.push_back(std::move(s));
  }
  CRM_ASSIGN_OR_RETURN(JsonValue windows, ReadJson(nab_dir / "labels" / "combined_windows.json"));
  CRM_RETURN_NOT_OK(AttachWindows(windows, &corpus));
  CRM_ASSIGN_OR_RETURN(JsonValue profiles, ReadJson(nab_dir / "config" / "profiles.json"));
  CRM_ASSIGN_OR_RETURN(corpus.profiles, ReadProfiles(profiles));
  return corpus;
}

Result<NabReport> EvaluateNabDetector(const fs::path& data_dir, const std::string& detector_name,
                                      const NabDetectorFn& detector,
                                      const std::optional<fs::path>& results_out) {
  CRM_ASSIGN_OR_RETURN(NabCorpus corpus, LoadNabCorpus(ResolveNabDir(data_dir)));
  NabScorer scorer(corpus.profiles), tune(corpus.profiles), held_out(corpus.profiles);
  std::vector<double> scores;
  std::string category;
  size_t position = 0;
  for (const NabSeries& s : corpus.series) {
    scores.assign(s.values.size(), 0.0);
    detector(s, scores);
    for (double& v : scores) v = std::isfinite(v) ? std::clamp(v, 0.0, 1.0) : 0.0;
    if (results_out) CRM_RETURN_NOT_OK(WriteResultsCsv(*results_out, detector_name, s, scores));
    CRM_RETURN_NOT_OK(scorer.AddFile(scores, s.windows).WithContext(s.relative_path));
    // Series are sorted by path, so a category's files are consecutive.
    const std::string file_category = s.relative_path.substr(0, s.relative_path.find('/'));
    position = file_category == category ? position + 1 : 0;
    category = file_category;
    NabScorer& half = NabSplitHalf(position) == NabHalf::kTune ? tune : held_out;
    CRM_RETURN_NOT_OK(half.AddFile(scores, s.windows).WithContext(s.relative_path));
  }
  NabReport report;
  report.detector = detector_name;
  report.profiles = scorer.Score();
  for (const NabProfileScore& p : report.profiles) {
    if (p.profile == "standard") report.standard = p.normalized;
    if (p.profile == "reward_low_FP_rate") report.low_fp = p.normalized;
    if (p.profile == "reward_low_FN_rate") report.low_fn = p.normalized;
  }
  report.files = scorer.files();
  report.points = scorer.rows();
  report.windows = scorer.windows();
  const std::vector<NabProfileScore> tuned = tune.Score();
  report.tune_half = Subset(tuned, tune);
  report.held_out_half = Subset(held_out.Score(), held_out);
  std::vector<double> tuned_thresholds;
  for (const NabProfileScore& p : tuned) tuned_thresholds.push_back(p.threshold);
  CRM_ASSIGN_OR_RETURN(const std::vector<NabProfileScore> fixed,
                       held_out.ScoreAt(tuned_thresholds));
  report.held_out_at_tune_thresholds = Subset(fixed, held_out);
  return report;
}

Result<NabReport> EvaluateNab(const fs::path& data_dir,
                              const std::optional<fs::path>& results_out) {
  return EvaluateNabDetector(
      data_dir, "crmstream",
      [](const NabSeries& s, std::span<double> scores) {
        models::UnivariateAnomalyDetector detector;
        for (size_t i = 0; i < s.values.size(); ++i) {
          scores[i] = detector.Score(s.epoch_seconds[i], s.values[i]);
        }
      },
      results_out);
}

void PrintNabReport(const NabReport& report, std::ostream& os) {
  // NAB scoreboard (README of numenta/NAB, v1.1).
  constexpr double kNa = std::numeric_limits<double>::quiet_NaN();
  static constexpr PublishedNabScore kPublished[] = {
      {"ARTime", 74.9, 65.1, 80.4},         {"Numenta HTM", 70.1, 63.1, 74.3},
      {"CAD OSE", 69.9, 67.0, 73.2},        {"KNN CAD", 58.0, kNa, kNa},
      {"Relative Entropy", 54.6, kNa, kNa}, {"Random Cut Forest", 51.7, kNa, kNa},
      {"Twitter ADVec", 47.1, kNa, kNa},    {"Windowed Gaussian", 39.6, 20.9, 47.4},
  };
  auto cell = [](double v) {
    std::ostringstream s;
    if (std::isnan(v)) {
      s << std::setw(9) << "-";
    } else {
      s << std::setw(9) << std::fixed << std::setprecision(1) << v;
    }
    return s.str();
  };
  std::ios saved_format(nullptr);
  saved_format.copyfmt(os);
  os << "NAB v1.1: " << report.files << " files, " << report.points << " points, " << report.windows
     << " windows\n";
  os << std::left << std::setw(22) << "detector" << std::right << std::setw(9) << "standard"
     << std::setw(9) << "low FP" << std::setw(9) << "low FN"
     << "\n";
  os << std::left << std::setw(22) << report.detector << std::right << cell(report.standard)
     << cell(report.low_fp) << cell(report.low_fn) << "   <- this run\n";
  const auto subset_row = [&](const char* name, const NabSubsetScore& sub) {
    os << std::left << std::setw(22) << name << std::right << cell(sub.standard) << cell(sub.low_fp)
       << cell(sub.low_fn) << "   " << sub.files << " files, " << sub.windows << " windows\n";
  };
  subset_row("  tuning half", report.tune_half);
  subset_row("  held-out half", report.held_out_half);
  subset_row("  held-out, tuned thr.", report.held_out_at_tune_thresholds);
  for (const PublishedNabScore& p : kPublished) {
    os << std::left << std::setw(22) << p.detector << std::right << cell(p.standard)
       << cell(p.low_fp) << cell(p.low_fn) << "\n";
  }
  for (const NabProfileScore& p : report.profiles) {
    os << "  " << p.profile << ": threshold " << std::setprecision(6) << p.threshold << ", raw "
       << std::setprecision(3) << std::fixed << p.raw << " (null " << p.null_raw << ", perfect "
       << p.perfect_raw << "), windows found " << p.true_positive_windows << ", missed "
       << p.false_negative_windows << ", false-positive rows " << p.false_positive_rows << "\n";
    os.unsetf(std::ios::fixed);
  }
  os.copyfmt(saved_format);
}

}  // namespace crmstream::evaluation
