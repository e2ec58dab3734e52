#include "crmstream/evaluation/telco.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/categorical_encoder.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/prequential_metrics.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/standardizer.h"

namespace crmstream::evaluation {
namespace {

using models::BayesianLogisticRegression;
using models::CategoricalEncoder;
using models::LogisticRegression;
using models::RecursiveLeastSquares;
using models::Standardizer;
using models::StreamingAuc;

constexpr std::string_view kFileName = "WA_Fn-UseC_-Telco-Customer-Churn.csv";

// ------------------------------------------------------------------ mapping
// How each column of the table becomes features. This table is the whole
// feature mapping; a pipeline file will later say the same thing.
enum class Role { kIgnore, kCategorical, kNumeric, kLabel };

struct ColumnSpec {
  std::string_view name;
  Role role;
};

constexpr std::array<ColumnSpec, 21> kColumns = {{
    {"customerID", Role::kIgnore},
    {"gender", Role::kCategorical},
    {"SeniorCitizen", Role::kCategorical},
    {"Partner", Role::kCategorical},
    {"Dependents", Role::kCategorical},
    {"tenure", Role::kNumeric},
    {"PhoneService", Role::kCategorical},
    {"MultipleLines", Role::kCategorical},
    {"InternetService", Role::kCategorical},
    {"OnlineSecurity", Role::kCategorical},
    {"OnlineBackup", Role::kCategorical},
    {"DeviceProtection", Role::kCategorical},
    {"TechSupport", Role::kCategorical},
    {"StreamingTV", Role::kCategorical},
    {"StreamingMovies", Role::kCategorical},
    {"Contract", Role::kCategorical},
    {"PaperlessBilling", Role::kCategorical},
    {"PaymentMethod", Role::kCategorical},
    {"MonthlyCharges", Role::kNumeric},
    {"TotalCharges", Role::kNumeric},  // blank on 11 rows (tenure 0): missing
    {"Churn", Role::kLabel},           // "Yes" = churned
}};

// Numeric features derived from the numeric columns (before standardising).
enum class Transform { kIdentity, kLog1p };
struct NumericSpec {
  std::string_view column;
  Transform transform;
};
constexpr std::array<NumericSpec, 5> kNumerics = {{
    {"tenure", Transform::kIdentity},
    {"tenure", Transform::kLog1p},
    {"MonthlyCharges", Transform::kIdentity},
    {"TotalCharges", Transform::kIdentity},
    {"TotalCharges", Transform::kLog1p},
}};

// Interactions: the one-hot of a categorical column times a standardised
// numeric feature (index into kNumerics), so each category gets its own slope.
struct InteractionSpec {
  std::string_view categorical;
  int numeric;
};
constexpr std::array<InteractionSpec, 3> kInteractions = {{
    {"Contract", 1},         // contract x log tenure: commitment decays differently
    {"InternetService", 2},  // internet service x monthly charges: fibre price sensitivity
    {"PaymentMethod", 1},    // payment method x log tenure
}};

// Categories per column before the overflow slot; the table has at most 4.
constexpr uint32_t kMaxCategories = 4;
constexpr uint32_t kOneHotWidth = kMaxCategories + 1;

int ColumnIndex(std::string_view name) {
  for (size_t i = 0; i < kColumns.size(); ++i) {
    if (kColumns[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

// ------------------------------------------------------------------ parsing
struct TelcoTable {
  std::vector<std::array<std::string, 21>> rows;
};

Result<TelcoTable> ReadTable(const std::filesystem::path& data_dir) {
  std::filesystem::path path = data_dir / "telco-churn" / kFileName;
  if (!std::filesystem::exists(path)) path = data_dir / kFileName;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open " + path.string());
  TelcoTable table;
  std::string line;
  bool header = true;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::array<std::string, 21> fields;
    size_t start = 0;
    size_t n = 0;
    while (true) {
      const size_t comma = line.find(',', start);
      if (n >= fields.size())
        return Status::Corruption(path.string() + ":" + std::to_string(line_no) +
                                  ": more than 21 fields");
      fields[n++] =
          line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (n != fields.size()) {
      return Status::Corruption(path.string() + ":" + std::to_string(line_no) + ": " +
                                std::to_string(n) + " fields, expected 21");
    }
    if (header) {
      for (size_t i = 0; i < fields.size(); ++i) {
        if (fields[i] != kColumns[i].name) {
          return Status::Corruption(path.string() + ": column " + std::to_string(i + 1) + " is '" +
                                    fields[i] + "', expected '" + std::string(kColumns[i].name) +
                                    "'");
        }
      }
      header = false;
      continue;
    }
    table.rows.push_back(std::move(fields));
  }
  if (table.rows.empty()) return Status::Corruption(path.string() + ": no data rows");
  return table;
}

// Parses a number; blank or unparseable is missing (NaN).
double ParseNumber(const std::string& s) {
  const char* begin = s.c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin) return std::nan("");
  return v;
}

double Sigmoid(double t) { return 1.0 / (1.0 + std::exp(-std::clamp(t, -35.0, 35.0))); }
double Logit(double p) {
  const double q = std::clamp(p, 1e-12, 1.0 - 1e-12);
  return std::log(q / (1.0 - q));
}

}  // namespace

Result<TelcoReport> EvaluateTelco(const std::filesystem::path& data_dir) {
  CRM_ASSIGN_OR_RETURN(TelcoTable table, ReadTable(data_dir));

  // Resolve the mapping table to column indices once.
  std::vector<int> categorical_columns;
  for (size_t i = 0; i < kColumns.size(); ++i) {
    if (kColumns[i].role == Role::kCategorical) categorical_columns.push_back(static_cast<int>(i));
  }
  std::vector<int> numeric_source;
  for (const NumericSpec& spec : kNumerics) numeric_source.push_back(ColumnIndex(spec.column));
  const int label_column = ColumnIndex("Churn");
  const int total_charges_column = ColumnIndex("TotalCharges");
  std::vector<int> interaction_categorical;  // position within categorical_columns
  for (const InteractionSpec& spec : kInteractions) {
    const int col = ColumnIndex(spec.categorical);
    interaction_categorical.push_back(
        static_cast<int>(std::find(categorical_columns.begin(), categorical_columns.end(), col) -
                         categorical_columns.begin()));
  }

  const int num_numeric = static_cast<int>(kNumerics.size());
  const int num_categorical = static_cast<int>(categorical_columns.size());
  const int onehot_offset = num_numeric;
  const int interaction_offset = onehot_offset + num_categorical * static_cast<int>(kOneHotWidth);
  const int constant_index =
      interaction_offset + static_cast<int>(kInteractions.size()) * static_cast<int>(kOneHotWidth);
  const int d = constant_index + 1;  // the constant 1, last

  std::vector<CategoricalEncoder> encoders;
  for (int i = 0; i < num_categorical; ++i) {
    CRM_ASSIGN_OR_RETURN(auto enc, CategoricalEncoder::Create({.max_categories = kMaxCategories}));
    encoders.push_back(std::move(enc));
  }
  CRM_ASSIGN_OR_RETURN(Standardizer scaler, Standardizer::Create(num_numeric));
  // The churn model, and two simpler online learners on the same features
  // for comparison. Hyperparameters are fixed here, before the stream.
  CRM_ASSIGN_OR_RETURN(
      BayesianLogisticRegression model,
      BayesianLogisticRegression::Create(
          {.dimension = d - 1, .prior_variance = 0.1, .intercept_prior_variance = 10.0}));
  CRM_ASSIGN_OR_RETURN(
      LogisticRegression ftrl,
      LogisticRegression::Create(
          {.dense_dimension = d - 1, .alpha = 0.05, .beta = 1.0, .l1 = 0.0, .l2 = 1.0}));
  // Ridge regression on the 0/1 label (a linear probability model), exact.
  CRM_ASSIGN_OR_RETURN(RecursiveLeastSquares ridge,
                       RecursiveLeastSquares::Create({.dimension = d, .ridge = 10.0}));
  // The online trees see the raw numeric values (a split needs no scaling)
  // and the one-hot columns, no interactions (a tree finds its own). Each
  // runs with its published defaults, chosen before the stream.
  const int tree_d = num_numeric + num_categorical * static_cast<int>(kOneHotWidth);
  models::HoeffdingTreeOptions vfdt_options;  // VFDT / MOA defaults
  vfdt_options.dimension = tree_d;
  CRM_ASSIGN_OR_RETURN(models::HoeffdingTree vfdt, models::HoeffdingTree::Create(vfdt_options));
  models::HoeffdingTreeOptions model_tree_options = vfdt_options;
  model_tree_options.leaf_prediction = models::LeafPrediction::kLogistic;
  CRM_ASSIGN_OR_RETURN(models::HoeffdingTree model_tree,
                       models::HoeffdingTree::Create(model_tree_options));
  models::AdaptiveRandomForestOptions forest_options;  // the ARF paper's defaults
  forest_options.dimension = tree_d;
  CRM_ASSIGN_OR_RETURN(models::AdaptiveRandomForest forest,
                       models::AdaptiveRandomForest::Create(forest_options));
  // The same forest with model trees as members (the engine's model_forest).
  models::AdaptiveRandomForestOptions model_forest_options = forest_options;
  model_forest_options.tree.leaf_prediction = models::LeafPrediction::kLogistic;
  CRM_ASSIGN_OR_RETURN(models::AdaptiveRandomForest model_forest,
                       models::AdaptiveRandomForest::Create(model_forest_options));
  std::vector<double> tree_x(static_cast<size_t>(tree_d));
  StreamingAuc auc_vfdt, auc_model_tree, auc_forest, auc_model_forest, auc_ensemble, auc_weighted;
  // The weighted ensemble's members (logistic, model tree, model forest) and
  // their summed prequential log loss so far.
  std::array<double, 3> member_loss{};
  std::array<double, 3> member_p{};

  TelcoReport report;
  report.dense_features = d;
  StreamingAuc auc, auc_ftrl, auc_ridge;
  models::LogLoss log_loss, base_loss;
  double seen = 0, seen_pos = 0;

  std::vector<double> raw(num_numeric), z(num_numeric);
  std::vector<double> x(d);
  std::vector<int> category_of(num_categorical);

  for (const auto& row : table.rows) {
    const std::string& label_text = row[label_column];
    if (label_text != "Yes" && label_text != "No") {
      return Status::Corruption("Churn is '" + label_text + "', expected Yes or No");
    }
    const bool label = label_text == "Yes";

    // Numeric features, standardised with the statistics of past rows only.
    if (std::isnan(ParseNumber(row[total_charges_column]))) ++report.missing_total_charges;
    for (int f = 0; f < num_numeric; ++f) {
      double v = ParseNumber(row[numeric_source[f]]);
      if (std::isnan(v) && numeric_source[f] == total_charges_column) {
        v = 0.0;  // blank only where tenure is 0: nothing billed yet
      }
      if (kNumerics[f].transform == Transform::kLog1p) v = std::log1p(std::max(v, 0.0));
      raw[f] = v;
    }
    scaler.Transform(raw, z);
    std::fill(x.begin(), x.end(), 0.0);
    for (int f = 0; f < num_numeric; ++f) x[f] = z[f];
    for (int c = 0; c < num_categorical; ++c) {
      const uint32_t k = encoders[c].Encode(row[categorical_columns[c]]);
      category_of[c] = static_cast<int>(k);
      x[onehot_offset + c * static_cast<int>(kOneHotWidth) + static_cast<int>(k)] = 1.0;
    }
    for (size_t i = 0; i < kInteractions.size(); ++i) {
      const int k = category_of[interaction_categorical[i]];
      x[interaction_offset + static_cast<int>(i * kOneHotWidth) + k] = z[kInteractions[i].numeric];
    }
    x[constant_index] = 1.0;  // for the ridge model; the logistic ones fit their own intercept
    std::fill(tree_x.begin(), tree_x.end(), 0.0);
    for (int f = 0; f < num_numeric; ++f) tree_x[static_cast<size_t>(f)] = raw[f];
    for (int c = 0; c < num_categorical; ++c) {
      tree_x[static_cast<size_t>(num_numeric + c * static_cast<int>(kOneHotWidth) +
                                 category_of[c])] = 1.0;
    }

    // Score with every learner before any of them sees the label.
    const std::span<const double> features(x.data(), static_cast<size_t>(d - 1));
    const std::span<const double> with_constant(x.data(), static_cast<size_t>(d));
    const double p = model.PredictProbability(features);
    auc.Add(p, label);
    log_loss.Add(p, label);
    auc_ftrl.Add(ftrl.PredictProbability(features), label);
    // The AUC bins span [0, 1]; the linear score is squeezed into it
    // monotonically so that its ranking survives intact.
    auc_ridge.Add(Sigmoid(ridge.Predict(with_constant) * 8.0 - 2.0), label);
    base_loss.Add(seen == 0 ? 0.5 : (seen_pos + 0.5) / (seen + 1.0), label);
    report.scores.push_back(p);
    report.labels.push_back(label ? 1 : 0);

    // The trees predict, record, then learn in one call.
    const double p_vfdt = vfdt.Learn(tree_x, label);
    const double p_model_tree = model_tree.Learn(tree_x, label);
    const double p_forest = forest.Learn(tree_x, label);
    const double p_model_forest = model_forest.Learn(tree_x, label);
    auc_vfdt.Add(p_vfdt, label);
    auc_model_tree.Add(p_model_tree, label);
    auc_forest.Add(p_forest, label);
    auc_model_forest.Add(p_model_forest, label);
    // The ensemble: the mean log-odds of the logistic model and the two
    // tree models, unweighted (no weight is tuned on the stream).
    const double p_ensemble = Sigmoid((Logit(p) + Logit(p_model_tree) + Logit(p_forest)) / 3.0);
    auc_ensemble.Add(p_ensemble, label);
    // The weighted ensemble: each member's probability weighted by
    // exp(-its summed log loss on the rows before this one), the Bayes
    // mixture (exponential weights with learning rate 1, which log loss
    // allows without a tuned rate; Cesa-Bianchi and Lugosi 2006, 3.3): its
    // log loss is at most the best member's plus ln 3.
    member_p = {p, p_model_tree, p_model_forest};
    const double least = *std::min_element(member_loss.begin(), member_loss.end());
    double mixed = 0.0, total = 0.0;
    for (size_t m = 0; m < member_p.size(); ++m) {
      const double w = std::exp(least - member_loss[m]);
      mixed += w * member_p[m];
      total += w;
    }
    const double p_weighted = mixed / total;
    auc_weighted.Add(p_weighted, label);
    for (size_t m = 0; m < member_p.size(); ++m) {
      const double q = std::clamp(member_p[m], 1e-15, 1.0 - 1e-15);
      member_loss[m] -= label ? std::log(q) : std::log1p(-q);
    }
    report.forest_scores.push_back(p_forest);
    report.model_forest_scores.push_back(p_model_forest);
    report.ensemble_scores.push_back(p_ensemble);
    report.weighted_ensemble_scores.push_back(p_weighted);
    // Train on the row now that it has been scored.
    (void)model.Update(features, label);
    (void)ftrl.Update(features, label);
    (void)ridge.Update(with_constant, label ? 1.0 : 0.0);
    scaler.Update(raw);
    seen += 1;
    seen_pos += label ? 1 : 0;
  }
  report.rows = static_cast<int>(table.rows.size());
  report.positives = static_cast<int>(seen_pos);
  report.auc = auc.Value();
  report.log_loss = log_loss.Value();
  report.ftrl_auc = auc_ftrl.Value();
  report.ridge_auc = auc_ridge.Value();
  report.base_rate_log_loss = base_loss.Value();
  report.vfdt_auc = auc_vfdt.Value();
  report.model_tree_auc = auc_model_tree.Value();
  report.forest_auc = auc_forest.Value();
  report.model_forest_auc = auc_model_forest.Value();
  report.ensemble_auc = auc_ensemble.Value();
  report.weighted_ensemble_auc = auc_weighted.Value();
  report.vfdt_leaves = static_cast<int>(vfdt.leaves());
  report.model_tree_leaves = static_cast<int>(model_tree.leaves());
  report.forest_drifts = static_cast<int>(forest.drifts());
  report.model_forest_drifts = static_cast<int>(model_forest.drifts());
  return report;
}

void PrintTelcoReport(const TelcoReport& r, std::ostream& out) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(4);
  s << "IBM Telco churn, one pass, predict then train (" << r.rows << " rows, " << r.positives
    << " churners, " << r.dense_features << " features)\n";
  s << "  prequential ROC-AUC  " << r.auc
    << "   (batch logistic regression 5-fold CV: " << kTelcoBatchLogisticAuc
    << "; scikit-learn SGD one pass: " << kTelcoSgdOnePassAucDefault << " defaults, "
    << kTelcoSgdOnePassAucTuned << " tuned)\n";
  s << "  prequential log loss " << r.log_loss << "   (running base rate: " << r.base_rate_log_loss
    << ")\n";
  s << "  same features, simpler online learners: FTRL-Proximal logistic " << r.ftrl_auc
    << ", ridge regression on the label " << r.ridge_auc << "\n";
  s << "  online trees, same rows, prequential ROC-AUC (target: an online model or ensemble >= "
    << kTelcoOnlineTarget << "):\n";
  s << "    Hoeffding tree (VFDT defaults, naive Bayes adaptive leaves)   " << r.vfdt_auc << "  ("
    << r.vfdt_leaves << " leaves)\n";
  s << "    Hoeffding model tree (Bayesian logistic leaves)              " << r.model_tree_auc
    << "  (" << r.model_tree_leaves << " leaves)\n";
  s << "    adaptive random forest (10 trees, lambda 6, ADWIN)           " << r.forest_auc << "  ("
    << r.forest_drifts << " drifts replaced)\n";
  s << "    adaptive random forest of model trees (same settings)        " << r.model_forest_auc
    << "  (" << r.model_forest_drifts << " drifts replaced)\n";
  s << "    ensemble: mean log-odds of logistic, model tree and forest   " << r.ensemble_auc
    << "\n";
  s << "    ensemble: logistic, model tree and forest of model trees,\n"
    << "      weighted by exp(-past log loss) (Bayes mixture)             "
    << r.weighted_ensemble_auc << "\n";
  out << s.str();
}

}  // namespace crmstream::evaluation
