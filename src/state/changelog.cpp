#include "crmstream/state/changelog.h"

#include <algorithm>
#include <array>

#include "crmstream/kafka/partition_reader.h"

namespace crmstream::state {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kStampBytes = 9;

bool KnownKind(uint8_t k) {
  switch (static_cast<ChangeKind>(k)) {
    case ChangeKind::kFeatures:
    case ChangeKind::kCustomerModel:
    case ChangeKind::kPartitionModel:
    case ChangeKind::kDedupWindow:
      return true;
  }
  return false;
}

}  // namespace

std::string ChangelogTopicName(std::string_view application_id, std::string_view input_topic) {
  std::string name;
  name.reserve(application_id.size() + input_topic.size() + 11);
  name.append(application_id).append("-").append(input_topic).append("-changelog");
  return name;
}

void EncodeChangelogKey(ChangeKind kind, std::string_view id, std::string* key) {
  key->clear();
  key->push_back(static_cast<char>(kind));
  key->append(id);
}

void EncodeChangelogStamp(int64_t input_offset, std::string* stamp) {
  stamp->clear();
  stamp->push_back(static_cast<char>(kChangelogRecordVersion));
  const auto v = static_cast<uint64_t>(input_offset);
  for (int shift = 56; shift >= 0; shift -= 8) stamp->push_back(static_cast<char>(v >> shift));
}

Result<StateChange> DecodeChangelogRecord(std::string_view key, std::string_view value,
                                          std::optional<std::string_view> stamp) {
  if (key.empty()) return Status::Corruption("changelog record without a key");
  const auto kind = static_cast<uint8_t>(key[0]);
  if (!KnownKind(kind)) {
    return Status::Corruption("changelog record of unknown kind " + std::to_string(kind));
  }
  if (!stamp) return Status::Corruption("changelog record without its crm.state header");
  if (stamp->size() != kStampBytes ||
      static_cast<uint8_t>((*stamp)[0]) != kChangelogRecordVersion) {
    return Status::Corruption(
        "changelog record with a crm.state header of version " +
        std::to_string(stamp->empty() ? 0 : static_cast<uint8_t>((*stamp)[0])) + " and " +
        std::to_string(stamp->size()) + " bytes");
  }
  uint64_t offset = 0;
  for (size_t i = 1; i < kStampBytes; ++i)
    offset = (offset << 8) | static_cast<uint8_t>((*stamp)[i]);
  StateChange change;
  change.kind = static_cast<ChangeKind>(kind);
  change.id = key.substr(1);
  change.value = value;
  change.input_offset = static_cast<int64_t>(offset);
  if (!value.empty()) {
    Status st = CheckSealedValue(value);
    if (!st.ok()) return st.WithContext("changelog record value");
  }
  return change;
}

void ApplyChange(PartitionKey p, const StateChange& change, CheckpointBatch* batch) {
  switch (change.kind) {
    case ChangeKind::kFeatures:
      if (change.tombstone()) {
        batch->DeleteFeatures(p, change.id);
      } else {
        batch->PutFeatures(p, change.id, change.value);
      }
      break;
    case ChangeKind::kCustomerModel:
      if (change.tombstone()) {
        batch->DeleteCustomerModel(p, change.id);
      } else {
        batch->PutCustomerModel(p, change.id, change.value);
      }
      break;
    case ChangeKind::kPartitionModel:
      if (change.tombstone()) {
        batch->DeletePartitionModel(p, change.id);
      } else {
        batch->PutPartitionModel(p, change.id, change.value);
      }
      break;
    case ChangeKind::kDedupWindow:
      if (change.tombstone()) {
        batch->DeleteDedupWindow(p);
      } else {
        batch->PutDedupWindow(p, change.value);
      }
      break;
  }
}

Status ProduceChange(kafka::Producer* producer, const std::string& topic, int32_t partition,
                     const StateChange& change, std::string* key, std::string* stamp) {
  EncodeChangelogKey(change.kind, change.id, key);
  EncodeChangelogStamp(change.input_offset, stamp);
  const std::array<kafka::MessageHeader, 1> headers{kafka::MessageHeader{kChangelogHeader, *stamp}};
  // A default string_view has no data: librdkafka sends a null value.
  const std::string_view value = change.tombstone() ? std::string_view() : change.value;
  return producer->Produce(topic, partition, *key, value, headers);
}

Result<ChangelogRestoreResult> RestoreFromChangelog(const kafka::ClientConfig& config,
                                                    const std::string& topic, int32_t partition,
                                                    StateStore* store, PartitionKey target,
                                                    const ChangelogRestoreOptions& options) {
  const Clock::time_point started = Clock::now();
  const std::string what = "changelog restore of " + topic + " [" + std::to_string(partition) + "]";

  ChangelogRestoreResult result;
  RestoreProgress progress;
  CheckpointBatch batch = store->NewBatch();
  size_t pending = 0;
  const bool from_scratch = options.start_offset < 0;
  kafka::PartitionReadOptions read_options;
  read_options.client_id = "crmstream-restore";
  read_options.timeout = options.timeout;
  const std::array<kafka::TopicPartitionOffset, 1> from{
      kafka::TopicPartitionOffset{topic, partition, options.start_offset}};
  Status read = kafka::ReadPartitionsToEnd(
      config, from, read_options,
      [&](std::span<const kafka::PartitionEnd> ends) {
        progress.end_offset = ends[0].end_offset;
        progress.next_offset = ends[0].start_offset;
        return store->BeginRestore(target, from_scratch);
      },
      [&](const kafka::MessageView& m) -> Status {
        auto change =
            DecodeChangelogRecord(m.key(), m.payload(), kafka::FindHeader(m, kChangelogHeader));
        if (!change.ok()) {
          return change.status().WithContext(what + ": offset " + std::to_string(m.offset()));
        }
        ApplyChange(target, *change, &batch);
        ++result.records;
        if (change->tombstone()) ++result.tombstones;
        result.input_offset = change->input_offset;
        progress.records = result.records;
        progress.next_offset = m.offset() + 1;
        if (++pending >= options.records_per_write) {
          CRM_RETURN_NOT_OK(store->Commit(&batch));
          pending = 0;
          if (options.progress) options.progress(progress);
        }
        return Status::OK();
      });
  CRM_RETURN_NOT_OK(read.WithContext(what));
  // Aborted records or markers may end the log below its high watermark: the
  // end reached is the end offset either way.
  progress.next_offset = std::max(progress.next_offset, progress.end_offset);

  // The last write ends the restore: its offsets and the cleared mark land
  // together with the final records.
  result.next_changelog_offset = progress.next_offset;
  batch.SetChangelogOffset(target, result.next_changelog_offset);
  if (result.input_offset >= 0) batch.SetInputOffset(target, result.input_offset);
  batch.FinishRestore(target);
  CRM_RETURN_NOT_OK(store->Commit(&batch));
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (options.progress) options.progress(progress);
  return result;
}

}  // namespace crmstream::state
