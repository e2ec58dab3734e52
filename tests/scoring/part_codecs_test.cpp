// The checkpoint codecs of each scoring part on its own: a customer's
// section and a partition blob come back into a fresh part (under other
// slots) as the same state, damaged or foreign bytes are refused, and a
// customer's record of several parts is installed whole or not at all.
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/scoring/behaviour_anomaly_detector.h"
#include "crmstream/scoring/churn_value_model.h"
#include "crmstream/scoring/customer_models.h"
#include "crmstream/scoring/customer_segmenter.h"
#include "crmstream/scoring/minute_metrics_monitor.h"
#include "scoring/scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using testing::Partition;
using testing::SmallGeneratedPartition;

// Every proper prefix and every single flipped byte of a sealed `blob` is
// refused as Corruption by `decode`.
void RequireDamageRefused(const std::string& blob,
                          const std::function<Status(std::string_view)>& decode) {
  for (size_t n = 0; n < blob.size(); ++n) {
    REQUIRE(decode(std::string_view(blob).substr(0, n)).code() == StatusCode::kCorruption);
  }
  std::string bad = blob;
  for (size_t i = 0; i < blob.size(); ++i) {
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    REQUIRE(decode(bad).code() == StatusCode::kCorruption);
    bad[i] = blob[i];
  }
}

// The customer's section read by `to` into `to_slot` writes the same bytes.
template <typename Part>
void RequireSectionRoundTrip(const Part& from, uint32_t from_slot, Part* to, uint32_t to_slot) {
  std::string section, again;
  from.AppendCustomer(from_slot, &section);
  BinaryReader in(section);
  auto decoded = to->ReadCustomer(&in);
  REQUIRE_OK(decoded);
  REQUIRE(in.AtEnd());
  to->InstallCustomer(to_slot, std::move(decoded).value());
  to->AppendCustomer(to_slot, &again);
  REQUIRE(again == section);
}

Status ReadSection(const auto& part, std::string_view section) {
  BinaryReader in(section);
  return part.ReadCustomer(&in).status();
}

// A section cut short, of another version, or longer than the part writes
// is Corruption (the record's checksum catches flipped bytes).
template <typename Part>
void RequireSectionDamageRefused(const Part& part, const std::string& section) {
  REQUIRE_OK(ReadSection(part, section));
  for (size_t n = 0; n < section.size(); ++n) {
    REQUIRE(ReadSection(part, std::string_view(section).substr(0, n)).code() ==
            StatusCode::kCorruption);
  }
  std::string other_version = section;
  // (A version far from any the part reads: some read their previous one.)
  other_version[0] = static_cast<char>(other_version[0] ^ 0x10);
  CHECK(ReadSection(part, other_version).code() == StatusCode::kCorruption);
  BinaryReader in(section);
  uint16_t version = 0;
  std::string payload;
  REQUIRE_OK(in.Get(&version));
  REQUIRE_OK(in.GetBytes(&payload));
  std::string longer;
  BinaryWriter w(&longer);
  w.Put<uint16_t>(version);
  w.PutBytes(payload + "x");
  CHECK(ReadSection(part, longer).code() == StatusCode::kCorruption);
}

// The ids of the partition's customers, in slot order.
std::vector<std::string> Ids(const Partition& p) {
  std::vector<std::string> ids;
  for (uint32_t s = 0; s < p.store->size(); ++s) ids.emplace_back(p.store->At(s).customer_id());
  return ids;
}

// A fresh feature store holding `from`'s customers in reverse order, so
// that every customer has another slot than in `from`.
std::unique_ptr<features::FeatureStore> ReversedStore(const Partition& from) {
  auto store = std::move(features::FeatureStore::Create(features::FeatureSpec{})).value();
  const std::vector<std::string> ids = Ids(from);
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    std::string blob;
    REQUIRE_OK(from.store->EncodeCustomer(*it, &blob));
    REQUIRE_OK(store->DecodeCustomer(*it, blob));
  }
  return store;
}

TEST_CASE("The churn part's state round-trips into a fresh part under other slots",
          "[scoring][state]") {
  const auto w = SmallGeneratedPartition();
  const ChurnValueModel& original = w->models.churn();
  REQUIRE(original.quality().pending_examples > 0);
  const auto store = ReversedStore(*w);
  REQUIRE_OK_AND_ASSIGN(ChurnValueModel fresh,
                        ChurnValueModel::Create(original.options(), store->spec()));

  size_t with_pending = 0;
  for (const std::string& id : Ids(*w)) {
    const uint32_t from = w->Customer(id).slot();
    const uint32_t to = store->Find(id)->slot();
    RequireSectionRoundTrip(original, from, &fresh, to);
    CHECK(fresh.PendingSnapshotMs(to) == original.PendingSnapshotMs(from));
    CHECK(fresh.churn_probability(to) == original.churn_probability(from));
    CHECK(fresh.closed(to) == original.closed(from));
    if (original.PendingSnapshotMs(from)) ++with_pending;
  }
  CHECK(with_pending > 0);
  std::string partition, again;
  original.EncodePartition(&partition);
  REQUIRE_OK(fresh.DecodePartition(partition));
  fresh.EncodePartition(&again);
  CHECK(again == partition);  // no slot numbers: the same bytes under other slots
  CHECK(fresh.quality().pending_examples == original.quality().pending_examples);
  CHECK(fresh.watermark_ms() == original.watermark_ms());
}

TEST_CASE("The churn part refuses damaged, foreign and mismatched state", "[scoring][state]") {
  const auto w = SmallGeneratedPartition();
  const ChurnValueModel& churn = w->models.churn();
  // A customer with a pending example: the section's longest form.
  uint32_t slot = 0;
  while (!churn.PendingSnapshotMs(slot)) ++slot;
  std::string section;
  churn.AppendCustomer(slot, &section);
  RequireSectionDamageRefused(churn, section);
  std::string foreign;
  w->models.segmenter().AppendCustomer(slot, &foreign);
  CHECK(ReadSection(churn, foreign).code() == StatusCode::kCorruption);
  // Written with 41 model inputs, read where the windows give 33: the
  // section holds none (the pending snapshot is in the label index, whose
  // reader checks its size), the partition blob refuses the dimension.
  const features::FeatureSpec two_windows{{7, 30}};
  REQUIRE_OK_AND_ASSIGN(ChurnValueModel narrower,
                        ChurnValueModel::Create(churn.options(), two_windows));
  CHECK(ReadSection(narrower, section).ok());

  std::string partition;
  churn.EncodePartition(&partition);
  CHECK(narrower.DecodePartition(partition).code() == StatusCode::kInvalidArgument);
  REQUIRE_OK_AND_ASSIGN(ChurnValueModel target,
                        ChurnValueModel::Create(churn.options(), w->store->spec()));
  RequireDamageRefused(partition, [&](std::string_view b) { return target.DecodePartition(b); });
  ChurnValueOptions other = churn.options();
  other.horizon_days = 20;
  REQUIRE_OK_AND_ASSIGN(ChurnValueModel shorter, ChurnValueModel::Create(other, w->store->spec()));
  CHECK(shorter.DecodePartition(partition).code() == StatusCode::kInvalidArgument);

  // Blob versions 1 to 4 (older state formats: no churn model kind, no
  // spend terms): refused, naming both versions, the model untouched.
  REQUIRE_OK_AND_ASSIGN(const OpenedBlob opened,
                        OpenBlob(partition, BlobKind::kChurnPartitionState));
  CHECK(opened.version == 5);
  std::string fresh_blob;
  target.EncodePartition(&fresh_blob);
  for (const uint16_t version : {1, 2, 3, 4}) {
    const std::string older = SealBlob(BlobKind::kChurnPartitionState, version, opened.payload);
    const Status refused = target.DecodePartition(older);
    CHECK(refused.code() == StatusCode::kCorruption);
    CHECK_THAT(refused.message(), Catch::Contains("version " + std::to_string(version)) &&
                                      Catch::Contains("expected 5"));
    std::string after;
    target.EncodePartition(&after);
    CHECK(after == fresh_blob);
  }
}

TEST_CASE("The segmenter's and behaviour detector's state round-trips and refuses damage",
          "[scoring][state]") {
  const auto w = SmallGeneratedPartition();
  const CustomerSegmenter& segmenter = w->models.segmenter();
  const BehaviourAnomalyDetector& behaviour = w->models.behaviour();
  REQUIRE(segmenter.seeded());
  const auto store = ReversedStore(*w);
  REQUIRE_OK_AND_ASSIGN(CustomerSegmenter fresh_segmenter,
                        CustomerSegmenter::Create(segmenter.options(), store->spec()));
  REQUIRE_OK_AND_ASSIGN(BehaviourAnomalyDetector fresh_behaviour,
                        BehaviourAnomalyDetector::Create(behaviour.options(), store->spec()));

  int segmented = 0;
  for (const std::string& id : Ids(*w)) {
    const uint32_t from = w->Customer(id).slot();
    const uint32_t to = store->Find(id)->slot();
    RequireSectionRoundTrip(segmenter, from, &fresh_segmenter, to);
    CHECK(fresh_segmenter.segment(to) == segmenter.segment(from));
    if (segmenter.segment(from) >= 0) ++segmented;
    RequireSectionRoundTrip(behaviour, from, &fresh_behaviour, to);
    CHECK(fresh_behaviour.score(to) == behaviour.score(from));
  }
  REQUIRE(segmented > 0);
  std::string partition, again;
  segmenter.EncodePartition(&partition);
  REQUIRE_OK(fresh_segmenter.DecodePartition(partition));
  fresh_segmenter.EncodePartition(&again);
  CHECK(again == partition);
  for (int c = 0; c < segmenter.options().k; ++c) {
    CHECK(fresh_segmenter.Size(c) == segmenter.Size(c));
  }
  RequireDamageRefused(partition,
                       [&](std::string_view b) { return fresh_segmenter.DecodePartition(b); });
  behaviour.EncodePartition(&partition);
  REQUIRE_OK(fresh_behaviour.DecodePartition(partition));
  fresh_behaviour.EncodePartition(&again);
  CHECK(again == partition);
  RequireDamageRefused(partition,
                       [&](std::string_view b) { return fresh_behaviour.DecodePartition(b); });

  // Damaged sections, of a customer in a segment.
  uint32_t slot = 0;
  while (segmenter.segment(slot) < 0) ++slot;
  std::string section;
  segmenter.AppendCustomer(slot, &section);
  RequireSectionDamageRefused(segmenter, section);
  CHECK(ReadSection(behaviour, section).code() == StatusCode::kCorruption);  // foreign
  section.clear();
  behaviour.AppendCustomer(slot, &section);
  RequireSectionDamageRefused(behaviour, section);
  CHECK(ReadSection(segmenter, section).code() == StatusCode::kCorruption);  // foreign
}

TEST_CASE("The minute metrics round-trip and continue identically", "[scoring][state]") {
  generator::WorldOptions wo;
  wo.seed = 9;
  wo.customers = 200;
  testing::EventSource source(wo);
  auto a = std::move(MinuteMetricsMonitor::Create({})).value();
  for (int n = 0; n < 5'000; ++n) a.OnEvent(source.Next());
  REQUIRE(a.latest_minute().minute_start_ms != 0);
  std::string blob, again;
  a.Encode(&blob);
  auto b = std::move(MinuteMetricsMonitor::Create({})).value();
  REQUIRE_OK(b.Decode(blob));
  b.Encode(&again);
  CHECK(again == blob);
  for (int n = 0; n < 5'000; ++n) {
    const ingest::Event& e = source.Next();
    a.OnEvent(e);
    b.OnEvent(e);
  }
  a.Encode(&blob);
  b.Encode(&again);
  CHECK(again == blob);
  CHECK(a.latest_minute().minute_start_ms == b.latest_minute().minute_start_ms);
  CHECK(a.late_events() == b.late_events());
  REQUIRE(a.anomalies().size() == b.anomalies().size());
}

// A record carries one blob per part: one that a part refuses leaves the
// customer as it was in every part, even those whose blobs were valid.
TEST_CASE("A customer record is installed whole or not at all", "[scoring][state]") {
  const auto w = SmallGeneratedPartition();
  const CustomerSegmenter& segmenter = w->models.segmenter();
  uint32_t slot = 0;
  while (segmenter.segment(slot) < 1 || !w->models.churn().PendingSnapshotMs(slot)) ++slot;
  const features::CustomerFeatures customer = w->store->At(slot);
  std::string record;
  REQUIRE_OK(w->models.EncodeCustomer(customer, &record));

  // The same customer in a partition segmented into one segment only: the
  // record's segment (>= 1) is out of range there.
  CustomerModelsOptions one_segment = testing::AlertingOptions();
  one_segment.segments.k = 1;
  const auto target = SmallGeneratedPartition(one_segment);
  const features::CustomerFeatures there = target->Customer(customer.customer_id());
  std::string before, after;
  REQUIRE_OK(target->models.EncodeCustomer(there, &before));
  REQUIRE(before != record);
  CHECK(target->models.DecodeCustomer(there, record).code() == StatusCode::kInvalidArgument);
  REQUIRE_OK(target->models.EncodeCustomer(there, &after));
  CHECK(after == before);

  // A record whose sections come in another order is foreign bytes.
  REQUIRE_OK_AND_ASSIGN(const std::string_view payload,
                        OpenBlobPayload(record, BlobKind::kCustomerModelState, 2));
  BinaryReader in(payload);
  std::string sections[3];
  for (std::string& section : sections) {
    uint16_t version = 0;
    std::string bytes;
    REQUIRE_OK(in.Get(&version));
    REQUIRE_OK(in.GetBytes(&bytes));
    BinaryWriter(&section).Put<uint16_t>(version);
    BinaryWriter(&section).PutBytes(bytes);
  }
  REQUIRE(in.AtEnd());
  const std::string swapped = sections[1] + sections[0] + sections[2];
  CHECK(w->models.DecodeCustomer(customer, SealBlob(BlobKind::kCustomerModelState, 2, swapped))
            .code() == StatusCode::kCorruption);
  // The sections as written decode.
  const std::string same = sections[0] + sections[1] + sections[2];
  CHECK_OK(w->models.DecodeCustomer(customer, SealBlob(BlobKind::kCustomerModelState, 2, same)));
}

}  // namespace
}  // namespace crmstream::scoring
