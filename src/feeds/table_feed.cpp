#include "crmstream/feeds/table_feed.h"

#include <chrono>
#include <cmath>

#include "crmstream/feeds/csv_rows.h"
#include "crmstream/models/categorical_encoder.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/prequential_metrics.h"
#include "crmstream/models/standardizer.h"

namespace crmstream::feeds {
namespace {

std::string Where(const CsvRows& rows) {
  return rows.path() + ":" + std::to_string(rows.line_number()) + ": ";
}

}  // namespace

Result<TableFeedReport> RunTableFeed(const FeedSpec& spec, const std::filesystem::path& input,
                                     const TableScoreFn& on_score) {
  if (spec.kind != FeedKind::kTable) {
    return Status::InvalidArgument(spec.file + ": not a table feed");
  }
  const TableFeedSpec& t = spec.table;
  CRM_ASSIGN_OR_RETURN(CsvRows rows, CsvRows::Open(input));

  // Resolve columns once.
  const int n_numeric = static_cast<int>(t.numeric.size());
  const int n_categorical = static_cast<int>(t.categorical.size());
  std::vector<size_t> numeric_column, categorical_column;
  for (const NumericColumn& n : t.numeric) {
    CRM_ASSIGN_OR_RETURN(size_t c, rows.Column(n.column));
    numeric_column.push_back(c);
  }
  for (const std::string& name : t.categorical) {
    CRM_ASSIGN_OR_RETURN(size_t c, rows.Column(name));
    categorical_column.push_back(c);
  }
  CRM_ASSIGN_OR_RETURN(size_t label_column, rows.Column(t.label_column));
  size_t id_column = 0;
  const bool has_id = !t.id_column.empty();
  if (has_id) {
    CRM_ASSIGN_OR_RETURN(id_column, rows.Column(t.id_column));
  }
  struct BoundInteraction {
    int categorical;  // index into t.categorical
    int numeric;      // index into t.numeric
  };
  std::vector<BoundInteraction> interactions;
  for (const Interaction& x : t.interactions) {
    BoundInteraction b{0, 0};
    for (int c = 0; c < n_categorical; ++c) {
      if (t.categorical[c] == x.categorical) b.categorical = c;
    }
    for (int n = 0; n < n_numeric; ++n) {
      if (t.numeric[n].name == x.numeric) b.numeric = n;
    }
    interactions.push_back(b);
  }

  // Layout: numeric | one-hot per categorical | one-hot slopes per interaction.
  const int width = t.max_categories + 1;  // + the overflow slot
  const int onehot_offset = n_numeric;
  const int interaction_offset = onehot_offset + n_categorical * width;
  const int d = interaction_offset + static_cast<int>(interactions.size()) * width;
  std::vector<std::string> names(static_cast<size_t>(d));
  for (int n = 0; n < n_numeric; ++n) names[n] = t.numeric[n].name;

  std::vector<models::CategoricalEncoder> encoders;
  for (int c = 0; c < n_categorical; ++c) {
    CRM_ASSIGN_OR_RETURN(auto enc,
                         models::CategoricalEncoder::Create(
                             {.max_categories = static_cast<uint32_t>(t.max_categories)}));
    encoders.push_back(std::move(enc));
  }
  CRM_ASSIGN_OR_RETURN(models::Standardizer scaler,
                       models::Standardizer::Create(std::max(1, n_numeric)));
  CRM_ASSIGN_OR_RETURN(models::BayesianLogisticRegression model,
                       models::BayesianLogisticRegression::Create(
                           {.dimension = d,
                            .prior_variance = t.prior_variance,
                            .intercept_prior_variance = t.intercept_prior_variance}));

  TableFeedReport report;
  report.features = d;
  models::StreamingAuc auc;
  models::LogLoss log_loss;
  std::vector<double> raw(std::max(1, n_numeric)), z(raw.size()), x(static_cast<size_t>(d));
  std::vector<uint32_t> category(static_cast<size_t>(n_categorical));
  std::vector<models::FeatureContribution> top;
  const auto start = std::chrono::steady_clock::now();

  while (true) {
    CRM_ASSIGN_OR_RETURN(bool more, rows.Next());
    if (!more) break;
    if (!rows.error().empty()) return Status::Corruption(Where(rows) + rows.error());
    const std::string_view label_text = rows.cell(label_column);
    if (label_text != t.positive && label_text != t.negative) {
      return Status::Corruption(Where(rows) + t.label_column + " is '" + std::string(label_text) +
                                "', expected '" + t.positive + "' or '" + t.negative + "'");
    }
    const bool label = label_text == t.positive;

    for (int n = 0; n < n_numeric; ++n) {
      double v = 0;
      if (!ParseNumber(rows.cell(numeric_column[n]), &v)) {
        if (std::isnan(t.numeric[n].missing)) {
          return Status::Corruption(Where(rows) + t.numeric[n].column + " is '" +
                                    std::string(rows.cell(numeric_column[n])) +
                                    "', not a number (set `missing:` to accept it)");
        }
        v = t.numeric[n].missing;
      }
      if (t.numeric[n].log1p) v = std::log1p(std::max(v, 0.0));
      raw[n] = v;
    }
    // Past rows only: transform with the statistics so far, update after.
    scaler.Transform(raw, z);
    std::fill(x.begin(), x.end(), 0.0);
    for (int n = 0; n < n_numeric; ++n) x[n] = z[n];
    for (int c = 0; c < n_categorical; ++c) {
      const std::string_view value = rows.cell(categorical_column[c]);
      const uint32_t k = encoders[c].Encode(value);
      category[c] = k;
      const size_t slot = static_cast<size_t>(onehot_offset + c * width) + k;
      x[slot] = 1.0;
      if (names[slot].empty()) names[slot] = t.categorical[c] + "=" + std::string(value);
    }
    for (size_t i = 0; i < interactions.size(); ++i) {
      const uint32_t k = category[interactions[i].categorical];
      const size_t slot = static_cast<size_t>(interaction_offset) + i * width + k;
      x[slot] = z[interactions[i].numeric];
      if (names[slot].empty()) {
        names[slot] =
            t.numeric[interactions[i].numeric].name + " x " +
            names[static_cast<size_t>(onehot_offset + interactions[i].categorical * width) + k];
      }
    }

    const double p = model.PredictProbability(x);
    auc.Add(p, label);
    log_loss.Add(p, label);
    if (on_score) on_score(has_id ? rows.cell(id_column) : std::string_view(), p, label);
    ++report.rows;
    report.positives += label ? 1 : 0;
    (void)model.Update(x, label);
    if (n_numeric > 0) scaler.Update(raw);
  }
  if (report.rows == 0) return Status::Corruption(input.string() + ": no data rows");
  model.TopContributions(x, 3, &top);
  for (const auto& c : top) report.last_explanation.emplace_back(names[c.feature], c.contribution);
  report.auc = auc.Value();
  report.log_loss = log_loss.Value();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace crmstream::feeds
