#include "crmstream/scoring/value_spend_terms.h"

#include <cmath>
#include <string>

namespace crmstream::scoring {

ValueSpendTerms::ValueSpendTerms(const features::FeatureSpec& spec) {
  const std::vector<std::string> names = features::FeatureStore::FeatureNames(spec);
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    if (n == "slog1p_monetary") {
      positions_.push_back({i, true});
    } else if (n == "log1p_avg_order_value" || n.starts_with("log1p_purchase_amount_") ||
               n.starts_with("log1p_refund_amount_")) {
      positions_.push_back({i, false});
    }
  }
}

void ValueSpendTerms::Compute(std::span<const double> snapshot, std::span<double> out) const {
  for (size_t k = 0; k < positions_.size(); ++k) {
    const double v = snapshot[positions_[k].index];
    out[k] = positions_[k].signed_log && v < 0 ? -std::expm1(-v) : std::expm1(v);
  }
}

}  // namespace crmstream::scoring
