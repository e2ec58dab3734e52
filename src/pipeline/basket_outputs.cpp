// The basket models of EventProcessor (co-purchase rules, recommendations):
// their learning step, the crm.associations snapshots, the
// crm.recommendations records and the reads the admin API answers.
#include <algorithm>
#include <optional>

#include "crmstream/common/clock.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::pipeline {
namespace {

// Replaces the closing brace of the JSON object in `*head` by the fields of
// the JSON object `tail` (both written by JsonWriter).
void AppendObjectFields(std::string_view tail, std::string* head) {
  head->back() = ',';
  head->append(tail.substr(1));
}

}  // namespace

void EventProcessor::OnPurchaseLine(const ingest::Event& event) {
  baskets_unsaved_ = true;
  if (associations_) {
    associations_->AddLine(event.order_id, event.item_id, event.timestamp_ms);
    EmitAssociationsIfDue();
  }
  if (recommender_) recommender_->Observe(event.customer_id, event.item_id, event.timestamp_ms);
}

void EventProcessor::EmitAssociationsIfDue() {
  if (!options_.emit_associations) return;
  // In event time, so a replay publishes the same snapshots: the first one
  // once the miner's clock passes the first multiple of the interval after
  // its first line, then one per interval with lines.
  const int64_t now = associations_->now_ms();
  const int64_t interval = options_.association_interval_ms;
  if (next_associations_ms_ != INT64_MIN && now < next_associations_ms_) return;
  if (next_associations_ms_ != INT64_MIN) {
    const models::RuleSummary summary = associations_->Rules(options_.association_floors, &rules_);
    const size_t n = std::min(rules_.size(), options_.association_max_rules);
    record_.clear();
    JsonWriter w(&record_);
    models::WriteAssociationRulesJson(
        *associations_, summary, std::span<const models::AssociationRule>(rules_.data(), n), &w);
    Publish(OutputKind::kAssociations, "rules");
  }
  next_associations_ms_ = (FloorDiv(now, interval) + 1) * interval;
}

void EventProcessor::EmitRecommendations() {
  // The pending customers are those of the batch: the buyers among them.
  features_->ForEachPending([this](std::string_view id, const features::CustomerFeatures& f) {
    if (!recommender_->TakeBought(id)) return;
    // As of the customer's purchase: its history weights.
    recommender_->Recommend(id, f.as_of_ms(), options_.recommendations_top_n, &recommendations_);
    record_.clear();
    JsonWriter w(&record_);
    models::WriteRecommendationsJson(*recommender_, id, f.as_of_ms(), recommendations_, &w);
    Publish(OutputKind::kRecommendations, id);
  });
}

Status EventProcessor::WriteRecommendations(std::string_view customer_id, std::string* out) {
  if (!recommender_) return Status::NotFound("recommendations are off in this pipeline");
  // A customer saved but not in the cache is loaded, as for the customer read.
  LoadSavedCustomer(customer_id);
  const features::CustomerFeatures* f = features_->Find(customer_id);
  if (f == nullptr) return Status::NotFound("unknown customer");
  // As of the partition's latest event time: the decay and history weights.
  const int64_t as_of = std::max(f->as_of_ms(), models_.watermark_ms());
  recommender_->Recommend(customer_id, as_of, options_.recommendations_top_n, &recommendations_);
  out->clear();
  JsonWriter w(out);
  models::WriteRecommendationsJson(*recommender_, customer_id, as_of, recommendations_, &w);
  return Status::OK();
}

Status WriteAssociationsFor(std::span<EventProcessor* const> processors, std::string_view item,
                            size_t k, std::string* out) {
  const models::AssociationRuleMiner* single = nullptr;
  std::optional<models::AssociationRuleMiner> merged;
  const EventProcessor* floors_of = nullptr;
  for (const EventProcessor* p : processors) {
    const models::AssociationRuleMiner* m = p->associations();
    if (m == nullptr) continue;
    floors_of = p;
    if (single == nullptr) {
      single = m;
    } else {
      // Baskets are one customer's, so each lives in one partition: the
      // merged window is that of the whole input.
      if (!merged) merged.emplace(*single);
      CRM_RETURN_NOT_OK(merged->Merge(*m));
    }
  }
  if (single == nullptr) {
    return Status::NotFound("co-purchase rules are off in this pipeline");
  }
  const models::AssociationRuleMiner& miner = merged ? *merged : *single;
  const int64_t index = miner.FindItem(item);
  if (index < 0 || miner.item_count(static_cast<uint32_t>(index)) == 0) {
    return Status::NotFound("unknown item");
  }
  std::vector<models::AssociationRule> rules;
  const models::RuleSummary summary =
      miner.RulesFor(item, floors_of->options().association_floors, k, &rules);
  std::string body;
  JsonWriter rules_json(&body);
  models::WriteAssociationRulesJson(miner, summary, rules, &rules_json);
  out->clear();
  JsonWriter w(out);
  w.BeginObject();
  w.Field("item", item);
  w.Field("partitions", static_cast<int64_t>(processors.size()));
  w.EndObject();
  AppendObjectFields(body, out);
  return Status::OK();
}

}  // namespace crmstream::pipeline
