#include "crmstream/models/adaptive_random_forest.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

bool AllFinite(std::span<const double> x) {
  for (double v : x) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

void AppendForestOptions(const AdaptiveRandomForestOptions& o, BinaryWriter& w) {
  w.Put<int32_t>(o.dimension);
  w.Put<int32_t>(o.models);
  w.Put<double>(o.lambda);
  w.Put<int32_t>(o.features_per_split);
  w.Put<double>(o.warning_delta);
  w.Put<double>(o.drift_delta);
  w.Put<uint8_t>(o.drift_detection ? 1 : 0);
  w.Put<uint8_t>(o.background_learners ? 1 : 0);
  o.tree.AppendTo(w);
  w.Put<uint64_t>(o.random_seed);
  w.Put<uint32_t>(o.auc_bins);
}

Result<AdaptiveRandomForestOptions> ReadForestOptions(BinaryReader& r) {
  AdaptiveRandomForestOptions o;
  uint8_t drift = 0, background = 0;
  CRM_RETURN_NOT_OK(r.Get(&o.dimension));
  CRM_RETURN_NOT_OK(r.Get(&o.models));
  CRM_RETURN_NOT_OK(r.Get(&o.lambda));
  CRM_RETURN_NOT_OK(r.Get(&o.features_per_split));
  CRM_RETURN_NOT_OK(r.Get(&o.warning_delta));
  CRM_RETURN_NOT_OK(r.Get(&o.drift_delta));
  CRM_RETURN_NOT_OK(r.Get(&drift));
  CRM_RETURN_NOT_OK(r.Get(&background));
  if (drift > 1 || background > 1) return Status::Corruption("forest options: bad flag");
  o.drift_detection = drift == 1;
  o.background_learners = background == 1;
  CRM_ASSIGN_OR_RETURN(o.tree, HoeffdingTreeOptions::ReadFrom(r));
  CRM_RETURN_NOT_OK(r.Get(&o.random_seed));
  CRM_RETURN_NOT_OK(r.Get(&o.auc_bins));
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("forest options: " + st.message());
  }
  return o;
}

}  // namespace

HoeffdingTreeOptions AdaptiveRandomForestOptions::DefaultTreeOptions() {
  HoeffdingTreeOptions t;
  t.dimension = 1;  // set by the forest
  t.grace_period = 50.0;
  t.split_confidence = 0.01;
  t.tie_threshold = 0.05;
  t.leaf_prediction = LeafPrediction::kNaiveBayesAdaptive;
  return t;
}

Status AdaptiveRandomForestOptions::Validate() const {
  if (dimension < 1 || dimension > 4096) {
    return Status::InvalidArgument("dimension must be in [1, 4096]");
  }
  if (models < 1 || models > 256) return Status::InvalidArgument("models must be in [1, 256]");
  if (!(lambda > 0.0 && lambda <= 100.0))
    return Status::InvalidArgument("lambda must be in (0, 100]");
  if (features_per_split < 0 || features_per_split > dimension) {
    return Status::InvalidArgument("features_per_split must be in [0, dimension]");
  }
  if (!(warning_delta > 0.0 && warning_delta < 1.0) || !(drift_delta > 0.0 && drift_delta < 1.0)) {
    return Status::InvalidArgument("warning_delta and drift_delta must be in (0, 1)");
  }
  if (auc_bins < 1 || auc_bins > (1u << 24)) {
    return Status::InvalidArgument("auc_bins must be in [1, 2^24]");
  }
  HoeffdingTreeOptions t = tree;
  t.dimension = dimension;
  t.features_per_split = 0;
  if (Status st = t.Validate(); !st.ok()) return st.WithContext("tree");
  return Status::OK();
}

AdaptiveRandomForest::AdaptiveRandomForest(const AdaptiveRandomForestOptions& options)
    : options_(options),
      features_per_split_(options.features_per_split > 0
                              ? options.features_per_split
                              : std::min(options.dimension,
                                         static_cast<int>(std::lround(
                                             std::sqrt(static_cast<double>(options.dimension)))) +
                                             1)),
      rng_state_(options.random_seed),
      auc_(options.auc_bins) {}

uint64_t AdaptiveRandomForest::NextRandom() { return SplitMix64(&rng_state_); }

HoeffdingTree AdaptiveRandomForest::NewTree() {
  HoeffdingTreeOptions t = options_.tree;
  t.dimension = options_.dimension;
  t.features_per_split = features_per_split_;
  t.random_seed = NextRandom();
  t.auc_bins = 1;  // members are judged by ADWIN and accuracy, not AUC
  Result<HoeffdingTree> tree = HoeffdingTree::Create(t);
  assert(tree.ok());  // the options were validated by Create
  return std::move(tree).value();
}

Result<AdaptiveRandomForest> AdaptiveRandomForest::Create(
    const AdaptiveRandomForestOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  AdaptiveRandomForest f(options);
  const AdwinOptions warning{.delta = options.warning_delta};
  const AdwinOptions drift{.delta = options.drift_delta};
  for (int i = 0; i < options.models; ++i) {
    CRM_ASSIGN_OR_RETURN(Adwin w, Adwin::Create(warning));
    CRM_ASSIGN_OR_RETURN(Adwin d, Adwin::Create(drift));
    f.members_.push_back(Member{f.NewTree(), std::nullopt, std::move(w), std::move(d)});
  }
  return f;
}

uint32_t AdaptiveRandomForest::Poisson() {
  // Knuth's multiplication method; lambda <= 100 keeps it short.
  const double limit = std::exp(-options_.lambda);
  double p = 1.0;
  uint32_t k = 0;
  do {
    ++k;
    p *= static_cast<double>(NextRandom() >> 11) * 0x1.0p-53;
  } while (p > limit && k < 1000);
  return k - 1;
}

double AdaptiveRandomForest::MemberWeight(const Member& m) const { return m.accuracy(); }

double AdaptiveRandomForest::PredictProbability(std::span<const double> x) const {
  double sum = 0.0, weights = 0.0, plain = 0.0;
  for (const Member& m : members_) {
    const double p = m.tree.PredictProbability(x);
    const double w = MemberWeight(m);
    sum += w * p;
    weights += w;
    plain += p;
  }
  return weights > 0.0 ? sum / weights : plain / static_cast<double>(members_.size());
}

double AdaptiveRandomForest::Learn(std::span<const double> x, bool label) {
  if (static_cast<int>(x.size()) != options_.dimension || !AllFinite(x)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double p = PredictProbability(x);
  auc_.Add(p, label);
  log_loss_.Add(p, label);
  ++count_;
  for (Member& m : members_) {
    const bool correct = (m.tree.PredictProbability(x) >= 0.5) == label;
    m.seen += 1.0;
    if (correct) m.correct += 1.0;
    const uint32_t k = Poisson();
    if (k > 0) {
      m.tree.Train(x, label, k);
      if (m.background) m.background->Train(x, label, k);
    }
    if (!options_.drift_detection) continue;
    const double error = correct ? 0.0 : 1.0;
    if (m.warning.Update(error)) {
      ++m.warnings;
      if (options_.background_learners) m.background = NewTree();
      m.warning.Reset();
    }
    if (m.drift.Update(error)) {
      ++m.drifts;
      m.tree = m.background ? std::move(*m.background) : NewTree();
      m.background.reset();
      m.warning.Reset();
      m.drift.Reset();
      m.correct = 0.0;
      m.seen = 0.0;
    }
  }
  return p;
}

void AdaptiveRandomForest::Explain(std::span<const double> x, TreeExplanation* out) const {
  out->bias = 0.0;
  out->leaf_adjustment = 0.0;
  out->contributions.clear();
  double weights = 0.0;
  for (const Member& m : members_) weights += MemberWeight(m);
  const bool plain = !(weights > 0.0);
  if (plain) weights = static_cast<double>(members_.size());
  for (const Member& m : members_) {
    const double w = (plain ? 1.0 : MemberWeight(m)) / weights;
    if (w == 0.0) continue;
    m.tree.Explain(x, &member_explanation_);
    out->bias += w * member_explanation_.bias;
    out->leaf_adjustment += w * member_explanation_.leaf_adjustment;
    for (const FeatureContribution& c : member_explanation_.contributions) {
      auto it = std::find_if(out->contributions.begin(), out->contributions.end(),
                             [&c](const FeatureContribution& o) { return o.feature == c.feature; });
      if (it == out->contributions.end()) {
        out->contributions.push_back({c.feature, false, w * c.contribution});
      } else {
        it->contribution += w * c.contribution;
      }
    }
  }
  std::sort(out->contributions.begin(), out->contributions.end(),
            [](const FeatureContribution& a, const FeatureContribution& b) {
              return std::fabs(a.contribution) > std::fabs(b.contribution);
            });
}

ForestMemberStats AdaptiveRandomForest::member_stats(size_t i) const {
  const Member& m = members_[i];
  return {m.accuracy(), m.warnings, m.drifts, m.background.has_value(), m.tree.leaves()};
}

uint64_t AdaptiveRandomForest::drifts() const {
  uint64_t n = 0;
  for (const Member& m : members_) n += m.drifts;
  return n;
}

size_t AdaptiveRandomForest::memory_bytes() const {
  size_t bytes = sizeof(*this) + 2 * options_.auc_bins * sizeof(uint64_t);
  for (const Member& m : members_) {
    bytes +=
        sizeof(Member) + m.tree.memory_bytes() + (m.background ? m.background->memory_bytes() : 0);
  }
  return bytes;
}

Status AdaptiveRandomForest::Merge(const AdaptiveRandomForest& other) {
  if (&other == this) return Status::InvalidArgument("AdaptiveRandomForest: cannot merge itself");
  std::string mine, theirs;
  BinaryWriter wm(&mine), wt(&theirs);
  AppendForestOptions(options_, wm);
  AppendForestOptions(other.options_, wt);
  if (mine != theirs) return Status::InvalidArgument("AdaptiveRandomForest::Merge: options differ");
  CRM_RETURN_NOT_OK(auc_.Merge(other.auc_));
  CRM_RETURN_NOT_OK(log_loss_.Merge(other.log_loss_));
  std::vector<Member> pool = std::move(members_);
  pool.insert(pool.end(), other.members_.begin(), other.members_.end());
  std::stable_sort(pool.begin(), pool.end(),
                   [](const Member& a, const Member& b) { return a.accuracy() > b.accuracy(); });
  pool.erase(pool.begin() + options_.models, pool.end());
  members_ = std::move(pool);
  count_ += other.count_;
  return Status::OK();
}

std::string AdaptiveRandomForest::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  AppendForestOptions(options_, w);
  w.Put<uint64_t>(rng_state_);
  w.Put<uint64_t>(count_);
  for (const Member& m : members_) {
    m.tree.AppendTo(w);
    w.Put<uint8_t>(m.background ? 1 : 0);
    if (m.background) m.background->AppendTo(w);
    m.warning.AppendTo(w);
    m.drift.AppendTo(w);
    w.Put<double>(m.correct);
    w.Put<double>(m.seen);
    w.Put<uint64_t>(m.warnings);
    w.Put<uint64_t>(m.drifts);
  }
  auc_.AppendTo(w);
  log_loss_.AppendTo(w);
  return SealBlob(BlobKind::kAdaptiveRandomForest, kBlobVersion, payload);
}

Result<AdaptiveRandomForest> AdaptiveRandomForest::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kAdaptiveRandomForest, kBlobVersion));
  BinaryReader r(payload);
  const auto corrupt = [](const std::string& what) {
    return Status::Corruption("AdaptiveRandomForest blob: " + what);
  };
  CRM_ASSIGN_OR_RETURN(const AdaptiveRandomForestOptions o, ReadForestOptions(r));
  AdaptiveRandomForest f(o);
  CRM_RETURN_NOT_OK(r.Get(&f.rng_state_));
  CRM_RETURN_NOT_OK(r.Get(&f.count_));
  const auto check_tree = [&](const HoeffdingTree& t) {
    const HoeffdingTreeOptions& to = t.options();
    return to.dimension == o.dimension && to.features_per_split == f.features_per_split_ &&
           to.auc_bins == 1 && to.grace_period == o.tree.grace_period &&
           to.split_confidence == o.tree.split_confidence &&
           to.tie_threshold == o.tree.tie_threshold && to.leaf_prediction == o.tree.leaf_prediction;
  };
  for (int i = 0; i < o.models; ++i) {
    CRM_ASSIGN_OR_RETURN(HoeffdingTree tree, HoeffdingTree::ReadFrom(r));
    if (!check_tree(tree)) return corrupt("member tree options differ from the forest's");
    uint8_t has_background = 0;
    CRM_RETURN_NOT_OK(r.Get(&has_background));
    if (has_background > 1) return corrupt("bad background flag");
    std::optional<HoeffdingTree> background;
    if (has_background == 1) {
      CRM_ASSIGN_OR_RETURN(HoeffdingTree b, HoeffdingTree::ReadFrom(r));
      if (!check_tree(b)) return corrupt("background tree options differ from the forest's");
      background = std::move(b);
    }
    CRM_ASSIGN_OR_RETURN(Adwin warning, Adwin::ReadFrom(r));
    CRM_ASSIGN_OR_RETURN(Adwin drift, Adwin::ReadFrom(r));
    Member m{std::move(tree), std::move(background), std::move(warning), std::move(drift)};
    CRM_RETURN_NOT_OK(r.Get(&m.correct));
    CRM_RETURN_NOT_OK(r.Get(&m.seen));
    CRM_RETURN_NOT_OK(r.Get(&m.warnings));
    CRM_RETURN_NOT_OK(r.Get(&m.drifts));
    if (!(m.correct >= 0.0) || !(m.seen >= m.correct) || !std::isfinite(m.seen)) {
      return corrupt("bad member accuracy");
    }
    f.members_.push_back(std::move(m));
  }
  CRM_ASSIGN_OR_RETURN(f.auc_, StreamingAuc::ReadFrom(r));
  if (f.auc_.bins() != o.auc_bins || f.auc_.lo() != 0.0 || f.auc_.hi() != 1.0) {
    return corrupt("AUC histogram differs from the options");
  }
  CRM_ASSIGN_OR_RETURN(f.log_loss_, LogLoss::ReadFrom(r));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  return f;
}

}  // namespace crmstream::models
