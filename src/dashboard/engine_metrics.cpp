#include "crmstream/dashboard/engine_metrics.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace crmstream::dashboard {

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::optional<double> ParseValue(std::string_view v) {
  if (v == "+Inf") return HUGE_VAL;
  if (v == "-Inf") return -HUGE_VAL;
  if (v == "NaN") return std::nullopt;
  // strtod, not from_chars: the exposition format allows forms like "1e+06".
  std::string s(v);
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') return std::nullopt;
  return d;
}

// Sum over labels of the series named `name`; nullopt when absent.
std::optional<double> Sum(const std::vector<MetricSample>& samples, std::string_view name) {
  std::optional<double> total;
  for (const MetricSample& s : samples) {
    if (s.name == name) total = total.value_or(0) + s.value;
  }
  return total;
}

template <typename Predicate>
std::optional<double> FirstMatching(const std::vector<MetricSample>& samples,
                                    const std::vector<std::string>& candidates,
                                    Predicate fallback) {
  for (const auto& name : candidates) {
    if (auto v = Sum(samples, name)) return v;
  }
  for (const MetricSample& s : samples) {
    if (fallback(s.name)) return Sum(samples, s.name);
  }
  return std::nullopt;
}

}  // namespace

std::vector<MetricSample> ParsePrometheusText(std::string_view text, std::string_view prefix) {
  std::vector<MetricSample> out;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#' || line.substr(0, prefix.size()) != prefix) continue;
    MetricSample sample;
    size_t pos = line.find_first_of("{ ");
    if (pos == std::string_view::npos) continue;
    sample.name.assign(line.substr(0, pos));
    if (line[pos] == '{') {
      // Label values may hold '}' inside quotes; find the closing brace outside them.
      bool quoted = false;
      size_t close = std::string_view::npos;
      for (size_t i = pos + 1; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted && c == '\\') {
          ++i;
        } else if (c == '"') {
          quoted = !quoted;
        } else if (!quoted && c == '}') {
          close = i;
          break;
        }
      }
      if (close == std::string_view::npos) continue;
      sample.labels.assign(line.substr(pos + 1, close - pos - 1));
      pos = close + 1;
    }
    std::string_view rest = line.substr(pos);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    rest = rest.substr(0, rest.find(' '));  // drop an optional timestamp
    auto value = ParseValue(rest);
    if (!value) continue;
    sample.value = *value;
    out.push_back(std::move(sample));
  }
  return out;
}

EngineReading EngineRateTracker::Update(int64_t wall_ms, const std::vector<MetricSample>& samples) {
  EngineReading reading;
  auto is_part = [](std::string_view n) {
    return EndsWith(n, "_bucket") || EndsWith(n, "_sum") || EndsWith(n, "_count") ||
           EndsWith(n, "_created");
  };
  reading.lag = FirstMatching(samples, names_.lag_gauges, [&](std::string_view n) {
    return n.find("lag") != std::string_view::npos && !is_part(n) && !EndsWith(n, "_total");
  });
  const auto count = FirstMatching(samples, names_.input_counters, [](std::string_view n) {
    return EndsWith(n, "_total") && n.find("bytes") == std::string_view::npos &&
           (n.find("consumed") != std::string_view::npos ||
            n.find("received") != std::string_view::npos);
  });
  // Values are the other process's text: an infinite gauge (or a sum that
  // overflows) is no reading, and must not reach the page as NaN.
  if (reading.lag && !std::isfinite(*reading.lag)) reading.lag.reset();
  if (!count || !std::isfinite(*count)) {
    last_ms_ = -1;
    return reading;
  }
  if (last_ms_ >= 0 && wall_ms > last_ms_ && *count >= last_count_) {
    const double rate = (*count - last_count_) * 1000.0 / static_cast<double>(wall_ms - last_ms_);
    if (std::isfinite(rate)) reading.events_per_second = rate;
  }
  last_ms_ = wall_ms;
  last_count_ = *count;
  return reading;
}

}  // namespace crmstream::dashboard
