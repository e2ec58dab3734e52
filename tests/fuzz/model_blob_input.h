// The input format of the model_decoder_fuzz target, shared with the test
// that keeps its seed corpus (tests/fuzz/corpus/model) decodable.
//
// Byte 0 picks one of the models' decoders (modulo kModelDecoders). Bit 0 of
// byte 1 says what the rest is: 0, a whole blob as stored (envelope,
// checksum, payload); 1, a bare payload, sealed here with the decoder's kind
// and current version so that mutations reach the payload parser instead of
// stopping at the checksum. Whatever a decoder accepts must serialise again,
// decode again to the same bytes, and survive one update.
//
// Header-only; no shared state beyond function-local constants, which are
// initialised once (thread-safe).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"
#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/adwin.h"
#include "crmstream/models/association_rules.h"
#include "crmstream/models/categorical_encoder.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/item_recommender.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/mini_batch_kmeans.h"
#include "crmstream/models/multivariate_anomaly.h"
#include "crmstream/models/prequential_metrics.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/rolling_correlation.h"
#include "crmstream/models/standardizer.h"
#include "crmstream/models/univariate_anomaly.h"

namespace crmstream::fuzz {

enum class ModelDecoder : uint8_t {
  kRecursiveLeastSquares = 0,
  kLogisticRegression,
  kBayesianLogisticRegression,
  kStandardizer,
  kCategoricalEncoder,
  kMiniBatchKMeans,
  kUnivariateAnomaly,
  kMultivariateAnomaly,
  kRollingCorrelation,
  // The prequential metrics are parts of other blobs: bare payloads only.
  kStreamingAuc,
  kLogLoss,
  kRmse,
  // Later models (after the metrics, so that older seeds keep their byte 0).
  kAssociationRules,
  kItemRecommender,
  kHoeffdingTree,
  kAdaptiveRandomForest,
  kAdwin,
};
inline constexpr int kModelDecoders = 17;

inline const char* ModelDecoderName(ModelDecoder d) {
  static constexpr const char* kNames[kModelDecoders] = {
      "rls",        "ftrl",         "bayes_logistic", "standardizer",  "categorical", "kmeans",
      "univariate", "multivariate", "correlation",    "auc",           "log_loss",    "rmse",
      "rules",      "recommender",  "hoeffding_tree", "random_forest", "adwin"};
  return kNames[static_cast<int>(d)];
}

inline bool IsMetric(ModelDecoder d) {
  return d == ModelDecoder::kStreamingAuc || d == ModelDecoder::kLogLoss ||
         d == ModelDecoder::kRmse;
}

// The blob kind of a model decoder (not for the metrics).
inline BlobKind KindOf(ModelDecoder d) {
  switch (d) {
    case ModelDecoder::kRecursiveLeastSquares:
      return BlobKind::kRecursiveLeastSquares;
    case ModelDecoder::kLogisticRegression:
      return BlobKind::kLogisticRegression;
    case ModelDecoder::kBayesianLogisticRegression:
      return BlobKind::kBayesianLogisticRegression;
    case ModelDecoder::kStandardizer:
      return BlobKind::kStandardizer;
    case ModelDecoder::kCategoricalEncoder:
      return BlobKind::kCategoricalEncoder;
    case ModelDecoder::kMiniBatchKMeans:
      return BlobKind::kMiniBatchKMeans;
    case ModelDecoder::kUnivariateAnomaly:
      return BlobKind::kUnivariateAnomaly;
    case ModelDecoder::kMultivariateAnomaly:
      return BlobKind::kMultivariateAnomaly;
    case ModelDecoder::kRollingCorrelation:
      return BlobKind::kRollingCorrelation;
    case ModelDecoder::kAssociationRules:
      return BlobKind::kAssociationRules;
    case ModelDecoder::kItemRecommender:
      return BlobKind::kItemRecommender;
    case ModelDecoder::kHoeffdingTree:
      return BlobKind::kHoeffdingTree;
    case ModelDecoder::kAdaptiveRandomForest:
      return BlobKind::kAdaptiveRandomForest;
    default:
      return BlobKind::kAdwin;
  }
}

namespace internal {

[[noreturn]] inline void Fail(const char* what) {
  (void)what;  // visible in the debugger and the crash's stack
  std::abort();
}

// Histograms up to StreamingAuc's limit (2^24 bins, 256 MiB) are valid, but
// sweeping them on every input would make the fuzzer crawl: above this many
// bins the decode is still run, the round trip and update are not.
inline constexpr uint32_t kMaxSweptBins = 1u << 16;

template <typename Model>
bool TooLargeToSweep(const Model& model) {
  if constexpr (requires { model.prequential_auc().bins(); }) {
    return model.prequential_auc().bins() > kMaxSweptBins;
  } else if constexpr (requires { model.bins(); }) {
    return model.bins() > kMaxSweptBins;
  } else {
    return false;
  }
}

// Decodes, re-encodes, decodes the re-encoding and compares bytes, then
// updates once with zeros (a decoded model must be usable, not just parsed).
template <typename Model, typename UpdateFn>
Status CheckModel(std::string_view blob, UpdateFn update) {
  Result<Model> model = Model::Deserialize(blob);
  if (!model.ok()) {
    if (model.status().code() != StatusCode::kCorruption) Fail("decoder error is not Corruption");
    return model.status();
  }
  if (TooLargeToSweep(*model)) return Status::OK();
  const std::string again = model->Serialize();
  Result<Model> reread = Model::Deserialize(again);
  if (!reread.ok()) Fail("re-encoded blob does not decode");
  if (reread->Serialize() != again) Fail("round trip changed the bytes");
  update(*model);
  return Status::OK();
}

template <typename Metric, typename AddFn>
Status CheckMetric(std::string_view payload, AddFn add) {
  BinaryReader reader(payload);
  Result<Metric> metric = Metric::ReadFrom(reader);
  if (!metric.ok()) return metric.status();
  if (TooLargeToSweep(*metric)) return Status::OK();
  std::string again;
  BinaryWriter writer(&again);
  metric->AppendTo(writer);
  BinaryReader reader2(again);
  Result<Metric> reread = Metric::ReadFrom(reader2);
  if (!reread.ok()) Fail("re-encoded metric does not decode");
  std::string twice;
  BinaryWriter writer2(&twice);
  reread->AppendTo(writer2);
  if (twice != again) Fail("metric round trip changed the bytes");
  add(*metric);
  return Status::OK();
}

// A tiny valid blob of each model, built once: the source of the current
// kind and version used to seal bare payloads.
inline const std::string& ReferenceBlob(ModelDecoder d) {
  static const std::vector<std::string> blobs = [] {
    using namespace models;
    std::vector<std::string> out(kModelDecoders);
    out[static_cast<size_t>(ModelDecoder::kAssociationRules)] =
        AssociationRuleMiner::Create({}).value().Serialize();
    out[static_cast<size_t>(ModelDecoder::kItemRecommender)] =
        ItemRecommender::Create({}).value().Serialize();
    out[static_cast<size_t>(ModelDecoder::kHoeffdingTree)] =
        HoeffdingTree::Create({.dimension = 2}).value().Serialize();
    out[static_cast<size_t>(ModelDecoder::kAdaptiveRandomForest)] =
        AdaptiveRandomForest::Create({.dimension = 2, .models = 2}).value().Serialize();
    out[static_cast<size_t>(ModelDecoder::kAdwin)] = Adwin::Create({}).value().Serialize();
    out[0] = RecursiveLeastSquares::Create({.dimension = 2}).value().Serialize();
    out[1] = LogisticRegression::Create({.dense_dimension = 2}).value().Serialize();
    out[2] = BayesianLogisticRegression::Create({.dimension = 2}).value().Serialize();
    out[3] = Standardizer::Create(2).value().Serialize();
    out[4] = CategoricalEncoder::Create({}).value().Serialize();
    out[5] =
        MiniBatchKMeans::Create({.k = 2, .dim = 2, .seed_buffer_size = 4, .recent_capacity = 4})
            .value()
            .Serialize();
    UnivariateAnomalyDetector::Options u;
    u.table_slots = 64;
    out[6] = UnivariateAnomalyDetector::Create(u).value().Serialize();
    MultivariateAnomalyDetector::Options m;
    m.dim = 2;
    out[7] = MultivariateAnomalyDetector::Create(m).value().Serialize();
    RollingCorrelationOptions c;
    c.metrics = 2;
    c.window_rows = 4;
    out[8] = RollingCorrelation::Create(c).value().Serialize();
    return out;
  }();
  return blobs[static_cast<size_t>(d)];
}

}  // namespace internal

// Builds an input in the format above.
inline std::string MakeModelInput(ModelDecoder d, bool bare_payload, std::string_view bytes) {
  std::string out;
  out.push_back(static_cast<char>(d));
  out.push_back(bare_payload ? '\x01' : '\x00');
  out.append(bytes);
  return out;
}

// Runs one input; the decoder's status (Corruption for a rejected blob).
// Aborts if an accepted blob breaks an invariant.
inline Status DecodeModelInput(std::string_view input) {
  using namespace models;
  if (input.size() < 2) return Status::Corruption("too short");
  const auto d = static_cast<ModelDecoder>(static_cast<uint8_t>(input[0]) % kModelDecoders);
  const bool bare = (static_cast<uint8_t>(input[1]) & 1) != 0;
  input.remove_prefix(2);

  if (IsMetric(d)) {
    switch (d) {
      case ModelDecoder::kStreamingAuc:
        return internal::CheckMetric<StreamingAuc>(input, [](StreamingAuc& m) {
          m.Add(0.5, true);
          (void)m.Value();
        });
      case ModelDecoder::kLogLoss:
        return internal::CheckMetric<LogLoss>(input, [](LogLoss& m) {
          m.Add(0.5, true);
          (void)m.Value();
        });
      default:
        return internal::CheckMetric<Rmse>(input, [](Rmse& m) {
          m.Add(0.5, 1.0);
          (void)m.Value();
        });
    }
  }

  std::string sealed;
  if (bare) {
    const BlobKind kind = KindOf(d);
    // The current format version, read back from a real blob.
    Result<OpenedBlob> opened = OpenBlob(internal::ReferenceBlob(d), kind);
    if (!opened.ok()) internal::Fail("reference blob does not open");
    sealed = SealBlob(kind, opened->version, input);
    input = sealed;
  }
  const auto zeros = [](size_t n) { return std::vector<double>(n, 0.0); };
  switch (d) {
    case ModelDecoder::kRecursiveLeastSquares:
      return internal::CheckModel<RecursiveLeastSquares>(input, [&](RecursiveLeastSquares& m) {
        (void)m.Update(zeros(static_cast<size_t>(m.dimension())), 1.0);
        (void)m.Predict(zeros(static_cast<size_t>(m.dimension())));
      });
    case ModelDecoder::kLogisticRegression:
      return internal::CheckModel<LogisticRegression>(input, [&](LogisticRegression& m) {
        const SparseFeature sparse[1] = {{7, 1.0}};
        (void)m.Update(zeros(static_cast<size_t>(m.dense_dimension())), sparse, true);
      });
    case ModelDecoder::kBayesianLogisticRegression:
      return internal::CheckModel<BayesianLogisticRegression>(
          input, [&](BayesianLogisticRegression& m) {
            (void)m.Update(zeros(static_cast<size_t>(m.dimension())), true);
          });
    case ModelDecoder::kStandardizer:
      return internal::CheckModel<Standardizer>(
          input, [&](Standardizer& m) { m.Update(zeros(static_cast<size_t>(m.dimension()))); });
    case ModelDecoder::kCategoricalEncoder:
      return internal::CheckModel<CategoricalEncoder>(input, [](CategoricalEncoder& m) {
        (void)m.Encode("fuzz");
        (void)m.Lookup("other");
      });
    case ModelDecoder::kMiniBatchKMeans:
      return internal::CheckModel<MiniBatchKMeans>(
          input, [&](MiniBatchKMeans& m) { (void)m.Update(zeros(static_cast<size_t>(m.dim()))); });
    case ModelDecoder::kUnivariateAnomaly:
      return internal::CheckModel<UnivariateAnomalyDetector>(
          input, [](UnivariateAnomalyDetector& m) { (void)m.Score(0, 1.0); });
    case ModelDecoder::kMultivariateAnomaly:
      return internal::CheckModel<MultivariateAnomalyDetector>(
          input, [&](MultivariateAnomalyDetector& m) { (void)m.Score(zeros(m.options().dim)); });
    case ModelDecoder::kRollingCorrelation:
      return internal::CheckModel<RollingCorrelation>(input, [&](RollingCorrelation& m) {
        (void)m.Add(zeros(static_cast<size_t>(m.metrics())), INT64_MAX);
      });
    case ModelDecoder::kAssociationRules:
      return internal::CheckModel<AssociationRuleMiner>(input, [](AssociationRuleMiner& m) {
        (void)m.AddLine("order", "item-a", 1000);
        (void)m.AddLine("order", "item-b", 1000);
        std::vector<AssociationRule> rules;
        (void)m.Rules({}, &rules);
      });
    case ModelDecoder::kItemRecommender:
      return internal::CheckModel<ItemRecommender>(input, [](ItemRecommender& m) {
        (void)m.Observe("customer", "item-a", 1000);
        std::vector<Recommendation> out;
        m.Recommend("customer", 1000, 5, &out);
      });
    case ModelDecoder::kHoeffdingTree:
      return internal::CheckModel<HoeffdingTree>(input, [&](HoeffdingTree& m) {
        (void)m.Learn(zeros(static_cast<size_t>(m.dimension())), true);
      });
    case ModelDecoder::kAdaptiveRandomForest:
      return internal::CheckModel<AdaptiveRandomForest>(input, [&](AdaptiveRandomForest& m) {
        (void)m.Learn(zeros(static_cast<size_t>(m.dimension())), true);
      });
    default:
      return internal::CheckModel<Adwin>(input, [](Adwin& m) { (void)m.Update(1.0); });
  }
}

}  // namespace crmstream::fuzz
