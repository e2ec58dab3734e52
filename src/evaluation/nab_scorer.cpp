#include "crmstream/evaluation/nab_scorer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace crmstream::evaluation {

std::vector<NabCostProfile> DefaultNabProfiles() {
  return {{"standard", 1.0, 0.11, 1.0},
          {"reward_low_FP_rate", 1.0, 0.22, 1.0},
          {"reward_low_FN_rate", 1.0, 0.11, 2.0}};
}

double NabScaledSigmoid(double relative_position) {
  if (relative_position >= 3.0) return -1.0;
  return 2.0 / (1.0 + std::exp(5.0 * relative_position)) - 1.0;
}

size_t NabProbationaryLength(size_t rows) {
  // NAB: min(floor(0.15 * rows), 0.15 * 5000).
  return std::min<size_t>(static_cast<size_t>(std::floor(0.15 * static_cast<double>(rows))), 750);
}

NabScorer::NabScorer(std::vector<NabCostProfile> profiles) : profiles_(std::move(profiles)) {}

Status NabScorer::AddFile(std::span<const double> scores, std::span<const NabWindow> windows) {
  const size_t n = scores.size();
  for (size_t w = 0; w < windows.size(); ++w) {
    if (windows[w].first_row > windows[w].last_row || windows[w].last_row >= n ||
        (w > 0 && windows[w].first_row <= windows[w - 1].last_row)) {
      return Status::InvalidArgument("NAB windows must be sorted, disjoint and inside the file");
    }
  }
  for (double s : scores) {
    if (!std::isfinite(s)) return Status::InvalidArgument("NAB anomaly scores must be finite");
  }
  const double max_tp = NabScaledSigmoid(-1.0);
  const size_t probation = NabProbationaryLength(n);
  size_t next_window = 0;
  bool in_window = false;
  int32_t window_id = -1;
  double width = 0.0, prev_width = 0.0;
  size_t right = 0, prev_right = 0;
  bool has_prev = false;
  for (size_t i = 0; i < n; ++i) {
    if (!in_window && next_window < windows.size() && windows[next_window].first_row == i) {
      in_window = true;
      right = windows[next_window].last_row;
      width = static_cast<double>(right - i + 1);
      window_id = -1;  // assigned on the window's first scored row
      ++next_window;
    }
    double weight;
    if (in_window) {
      const double position = -static_cast<double>(right - i + 1) / width;
      weight = NabScaledSigmoid(position) / max_tp;
    } else {
      // NAB divides by (width - 1); a one-row window would divide by zero
      // there, so it is treated as "far past" the window.
      double past = 3.0;
      if (has_prev && prev_width > 1.0)
        past = static_cast<double>(i - prev_right) / (prev_width - 1.0);
      weight = NabScaledSigmoid(past);
    }
    if (i >= probation) {
      if (in_window && window_id < 0) window_id = static_cast<int32_t>(scored_windows_++);
      scored_rows_.push_back({scores[i], weight, in_window ? window_id : -1});
    }
    if (in_window && i == right) {
      in_window = false;
      has_prev = true;
      prev_right = right;
      prev_width = width;
    }
  }
  labelled_windows_ += windows.size();
  rows_ += n;
  ++files_;
  return Status::OK();
}

std::vector<uint32_t> NabScorer::DescendingOrder() const {
  std::vector<uint32_t> order(scored_rows_.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return scored_rows_[a].anomaly_score > scored_rows_[b].anomaly_score;
  });
  return order;
}

NabProfileScore NabScorer::Sweep(const NabCostProfile& profile, std::span<const uint32_t> order,
                                 const double* fixed_threshold) const {
  NabProfileScore result;
  result.profile = profile.name;
  result.null_raw = -profile.fn_weight * static_cast<double>(scored_windows_);
  result.perfect_raw = profile.tp_weight * static_cast<double>(labelled_windows_);
  std::vector<double> window_part(scored_windows_, -profile.fn_weight);

  double total = result.null_raw;
  int64_t tp_windows = 0, fp_rows = 0;
  double threshold = 1.1;
  result.threshold = fixed_threshold != nullptr ? *fixed_threshold : threshold;
  result.raw = total;
  result.false_negative_windows = static_cast<int64_t>(scored_windows_);
  auto keep = [&] {
    result.raw = total;
    result.true_positive_windows = tp_windows;
    result.false_negative_windows = static_cast<int64_t>(scored_windows_) - tp_windows;
    result.false_positive_rows = fp_rows;
  };
  // Walks the rows from the highest score down; every distinct score is a
  // candidate threshold whose total is known once all its ties are in.
  for (size_t k = 0; k <= order.size(); ++k) {
    const bool new_threshold =
        k == order.size() || scored_rows_[order[k]].anomaly_score != threshold;
    if (fixed_threshold != nullptr) {
      if (k == order.size() || scored_rows_[order[k]].anomaly_score < *fixed_threshold) {
        keep();
        break;
      }
    } else if (new_threshold && total > result.raw) {
      keep();
      result.threshold = threshold;
    }
    if (k == order.size()) break;
    const ScoredRow& row = scored_rows_[order[k]];
    threshold = row.anomaly_score;
    if (row.window < 0) {
      total += profile.fp_weight * row.position_weight;
      ++fp_rows;
    } else {
      double& part = window_part[static_cast<size_t>(row.window)];
      const double candidate = profile.tp_weight * row.position_weight;
      if (part == -profile.fn_weight) ++tp_windows;
      if (candidate > part) {
        total += candidate - part;
        part = candidate;
      }
    }
  }
  const double span = result.perfect_raw - result.null_raw;
  result.normalized = span > 0.0 ? 100.0 * (result.raw - result.null_raw) / span : 0.0;
  return result;
}

std::vector<NabProfileScore> NabScorer::Score() const {
  const std::vector<uint32_t> order = DescendingOrder();
  std::vector<NabProfileScore> out;
  for (const NabCostProfile& profile : profiles_) out.push_back(Sweep(profile, order, nullptr));
  return out;
}

Result<std::vector<NabProfileScore>> NabScorer::ScoreAt(std::span<const double> thresholds) const {
  if (thresholds.size() != profiles_.size()) {
    return Status::InvalidArgument("ScoreAt needs one threshold per profile");
  }
  const std::vector<uint32_t> order = DescendingOrder();
  std::vector<NabProfileScore> out;
  for (size_t p = 0; p < profiles_.size(); ++p) {
    if (!std::isfinite(thresholds[p])) return Status::InvalidArgument("thresholds must be finite");
    out.push_back(Sweep(profiles_[p], order, &thresholds[p]));
  }
  return out;
}

}  // namespace crmstream::evaluation
