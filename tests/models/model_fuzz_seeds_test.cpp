// The seed corpus of model_decoder_fuzz (tests/fuzz/corpus/model) must stay
// decodable as the blob formats evolve: a seed the decoders reject only
// teaches the fuzzer the rejection path. With CRMSTREAM_WRITE_MODEL_SEEDS=DIR
// set, the test first writes fresh seeds (small models after a few updates)
// into DIR; pointing it at tests/fuzz/corpus/model regenerates the corpus.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/model_blob_input.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::models {
namespace {

namespace fs = std::filesystem;
using fuzz::MakeModelInput;
using fuzz::ModelDecoder;

// One small model of each kind after a few updates, as stored blobs.
std::vector<std::pair<ModelDecoder, std::string>> SeedBlobs() {
  std::vector<std::pair<ModelDecoder, std::string>> out;
  const std::vector<std::vector<double>> rows = {{1.0, 2.0},  {0.5, -1.0}, {2.0, 0.25},
                                                 {-1.5, 1.0}, {0.0, 3.0},  {1.25, -0.5}};
  auto rls = RecursiveLeastSquares::Create({.dimension = 2}).value();
  auto ftrl = LogisticRegression::Create({.dense_dimension = 2, .hashed_dimension = 4}).value();
  auto bayes = BayesianLogisticRegression::Create({.dimension = 2}).value();
  auto standardizer = Standardizer::Create(2).value();
  auto kmeans =
      MiniBatchKMeans::Create({.k = 2, .dim = 2, .seed_buffer_size = 4, .recent_capacity = 4})
          .value();
  MultivariateAnomalyDetector::Options mo;
  mo.dim = 2;
  auto multivariate = MultivariateAnomalyDetector::Create(mo).value();
  RollingCorrelationOptions co;
  co.metrics = 2;
  co.window_rows = 4;
  auto correlation = RollingCorrelation::Create(co).value();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& x = rows[i];
    const bool label = i % 2 == 0;
    (void)rls.Update(x, x[0] - x[1]);
    const SparseFeature sparse[1] = {{static_cast<uint32_t>(i), 1.0}};
    (void)ftrl.Update(x, sparse, label);
    (void)bayes.Update(x, label);
    standardizer.Update(x);
    REQUIRE_OK(kmeans.Update(x));
    (void)multivariate.Score(x);
    REQUIRE_OK(correlation.Add(x, static_cast<int64_t>(i)));
  }
  auto vocabulary = CategoricalEncoder::Create({.max_categories = 4}).value();
  for (const char* v : {"a", "b", "a", "c"}) (void)vocabulary.Encode(v);
  UnivariateAnomalyDetector::Options uo;
  uo.table_slots = 64;
  auto univariate = UnivariateAnomalyDetector::Create(uo).value();
  for (int i = 0; i < 20; ++i) (void)univariate.Score(i, std::sin(i * 0.5));

  out.emplace_back(ModelDecoder::kRecursiveLeastSquares, rls.Serialize());
  out.emplace_back(ModelDecoder::kLogisticRegression, ftrl.Serialize());
  out.emplace_back(ModelDecoder::kBayesianLogisticRegression, bayes.Serialize());
  out.emplace_back(ModelDecoder::kStandardizer, standardizer.Serialize());
  out.emplace_back(ModelDecoder::kCategoricalEncoder, vocabulary.Serialize());
  out.emplace_back(ModelDecoder::kMiniBatchKMeans, kmeans.Serialize());
  out.emplace_back(ModelDecoder::kUnivariateAnomaly, univariate.Serialize());
  out.emplace_back(ModelDecoder::kMultivariateAnomaly, multivariate.Serialize());
  out.emplace_back(ModelDecoder::kRollingCorrelation, correlation.Serialize());

  auto rules = AssociationRuleMiner::Create({.max_pairs = 16}).value();
  auto recommender = ItemRecommender::Create({.history_size = 4, .neighbours = 2}).value();
  auto tree = HoeffdingTree::Create({.dimension = 2, .grace_period = 2, .auc_bins = 16}).value();
  auto logistic_tree = HoeffdingTree::Create({.dimension = 2,
                                              .grace_period = 2,
                                              .leaf_prediction = LeafPrediction::kLogistic,
                                              .auc_bins = 16})
                           .value();
  AdaptiveRandomForestOptions fo;
  fo.dimension = 2;
  fo.models = 2;
  fo.auc_bins = 16;
  fo.tree.grace_period = 2;
  auto forest = AdaptiveRandomForest::Create(fo).value();
  auto adwin = Adwin::Create({.clock = 4}).value();
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& x = rows[i];
    const bool label = x[0] > x[1];
    for (size_t k = 0; k <= i % 3; ++k) {
      (void)rules.AddLine(std::to_string(i / 2), "sku" + std::to_string((i + k) % 5),
                          static_cast<int64_t>(i) * 1000);
      (void)recommender.Observe("c" + std::to_string(i % 2), "sku" + std::to_string((i + k) % 5),
                                static_cast<int64_t>(i));
    }
    (void)tree.Learn(x, label);
    (void)logistic_tree.Learn(x, label);
    (void)forest.Learn(x, label);
    (void)adwin.Update(label ? 1.0 : 0.0);
  }
  out.emplace_back(ModelDecoder::kAssociationRules, rules.Serialize());
  out.emplace_back(ModelDecoder::kItemRecommender, recommender.Serialize());
  out.emplace_back(ModelDecoder::kHoeffdingTree, tree.Serialize());
  out.emplace_back(ModelDecoder::kHoeffdingTree, logistic_tree.Serialize());
  out.emplace_back(ModelDecoder::kAdaptiveRandomForest, forest.Serialize());
  out.emplace_back(ModelDecoder::kAdwin, adwin.Serialize());
  return out;
}

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  // Names: a second seed of the same decoder gets a suffix.
  std::map<std::string, int> taken;
  const auto unique_name = [&taken](ModelDecoder d, const char* what) {
    const std::string base = std::string(fuzz::ModelDecoderName(d)) + what;
    const int n = taken[base]++;
    return n == 0 ? base : base + "-" + std::to_string(n + 1);
  };
  for (const auto& [decoder, blob] : SeedBlobs()) {
    seeds.emplace_back(unique_name(decoder, "-blob"), MakeModelInput(decoder, false, blob));
  }
  // Payloads: open each blob with its own kind.
  for (const auto& [decoder, blob] : SeedBlobs()) {
    Result<OpenedBlob> opened = OpenBlob(blob, fuzz::KindOf(decoder));
    REQUIRE_OK(opened);
    seeds.emplace_back(unique_name(decoder, "-payload"),
                       MakeModelInput(decoder, true, opened->payload));
  }
  // The metrics as embedded in other blobs.
  StreamingAuc auc(16);
  LogLoss log_loss;
  Rmse rmse;
  for (int i = 0; i < 6; ++i) {
    auc.Add(i / 6.0, i % 2 == 0);
    log_loss.Add(0.2 + i / 10.0, i % 3 == 0);
    rmse.Add(i, i + 0.5);
  }
  const auto encode = [](const auto& metric) {
    std::string s;
    BinaryWriter w(&s);
    metric.AppendTo(w);
    return s;
  };
  seeds.emplace_back("auc-payload", MakeModelInput(ModelDecoder::kStreamingAuc, true, encode(auc)));
  seeds.emplace_back("log_loss-payload",
                     MakeModelInput(ModelDecoder::kLogLoss, true, encode(log_loss)));
  seeds.emplace_back("rmse-payload", MakeModelInput(ModelDecoder::kRmse, true, encode(rmse)));
  return seeds;
}

TEST_CASE("Model decoder fuzz seeds decode and cover every decoder", "[models]") {
  if (const char* dir = std::getenv("CRMSTREAM_WRITE_MODEL_SEEDS")) {
    fs::create_directories(dir);
    for (const auto& [name, bytes] : Seeds()) {
      std::ofstream out(fs::path(dir) / (name + ".bin"), std::ios::binary | std::ios::trunc);
      out << bytes;
      REQUIRE(out.good());
    }
  }
  // Freshly built inputs are accepted ...
  for (const auto& [name, bytes] : Seeds()) {
    INFO(name);
    CHECK_OK(fuzz::DecodeModelInput(bytes));
  }
  // ... and so is every checked-in seed, together covering all decoders.
  const fs::path corpus = testing::SourceDir() / "tests" / "fuzz" / "corpus" / "model";
  REQUIRE(fs::is_directory(corpus));
  std::set<int> covered;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    INFO(entry.path().string());
    REQUIRE(bytes.size() >= 2);
    CHECK_OK(fuzz::DecodeModelInput(bytes));
    covered.insert(static_cast<uint8_t>(bytes[0]) % fuzz::kModelDecoders);
  }
  CHECK(covered.size() == static_cast<size_t>(fuzz::kModelDecoders));
  // Rejections are Corruption, not crashes: a few hand-made bad inputs.
  CHECK_FALSE(fuzz::DecodeModelInput("").ok());
  CHECK_FALSE(fuzz::DecodeModelInput(std::string("\x00\x00", 2)).ok());
  CHECK_FALSE(fuzz::DecodeModelInput(std::string("\x06\x01garbage", 9)).ok());
}

}  // namespace
}  // namespace crmstream::models
