#include "crmstream/state/changelog.h"

#include <array>

#include "crmstream/kafka/handles.h"
#include "crmstream/kafka/kafka_error.h"

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
  const Clock::time_point deadline = started + options.timeout;
  const std::string what = "changelog restore of " + topic + " [" + std::to_string(partition) + "]";

  kafka::ClientConfig effective = config;
  effective.SetDefault("client.id", "crmstream-restore");
  effective.Set("isolation.level", "read_committed");
  effective.Set("enable.partition.eof", "true");
  effective.Set("enable.auto.commit", "false");
  effective.Set("enable.auto.offset.store", "false");
  effective.SetDefault("auto.offset.reset", "earliest");
  // The end is detected by an empty fetch at the end offset: do not let the
  // broker hold that fetch for the default 500 ms.
  effective.SetDefault("fetch.wait.max.ms", "10");
  // A group id is required by the consumer API even with manual assignment;
  // nothing is committed under it.
  effective.SetDefault("group.id", "crmstream-restore");
  CRM_ASSIGN_OR_RETURN(kafka::ConfHandle conf, effective.BuildConf());
  kafka::RouteLogsToSpdlog(conf.get());
  std::array<char, 512> errstr{};
  kafka::KafkaHandle rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size()));
  if (!rk) return Status::InvalidArgument(what + ": " + errstr.data());
  conf.release();  // owned by the client now
  rd_kafka_poll_set_consumer(rk.get());

  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  // Metadata may lag right after a broker restart: retry within the deadline.
  do {
    err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), partition, &low, &high, 5000);
  } while (err != RD_KAFKA_RESP_ERR_NO_ERROR &&
           kafka::KafkaErrorCode(err) == StatusCode::kUnavailable && Clock::now() < deadline);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka::KafkaStatus(err, what + ": end offset");

  const bool from_scratch = options.start_offset < 0;
  CRM_RETURN_NOT_OK(store->BeginRestore(target, from_scratch));

  kafka::PartitionListHandle list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset =
      from_scratch ? RD_KAFKA_OFFSET_BEGINNING : options.start_offset;
  err = rd_kafka_assign(rk.get(), list.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return kafka::KafkaStatus(err, what + ": assign");

  ChangelogRestoreResult result;
  RestoreProgress progress;
  progress.end_offset = high;
  progress.next_offset = from_scratch ? low : options.start_offset;
  CheckpointBatch batch = store->NewBatch();
  size_t pending = 0;
  bool reached_end = false;
  Status failure;

  while (!reached_end) {
    if (Clock::now() >= deadline) {
      failure = Status::Unavailable(what + ": end not reached within " +
                                    std::to_string(options.timeout.count()) + " ms (at offset " +
                                    std::to_string(progress.next_offset) + " of " +
                                    std::to_string(high) + ")");
      break;
    }
    kafka::MessageHandle msg(rd_kafka_consumer_poll(rk.get(), 100));
    if (!msg) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (msg->partition == partition) {
        progress.next_offset = std::max(progress.next_offset, msg->offset);
        reached_end = true;
      }
      continue;
    }
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const StatusCode code = kafka::KafkaErrorCode(msg->err);
      if (code == StatusCode::kUnavailable) continue;  // transient: librdkafka retries
      failure = kafka::KafkaStatus(msg->err, what);
      break;
    }
    rd_kafka_headers_t* headers = nullptr;
    std::optional<std::string_view> stamp;
    if (rd_kafka_message_headers(msg.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const void* v = nullptr;
      size_t size = 0;
      if (rd_kafka_header_get_last(headers, kChangelogHeader.data(), &v, &size) ==
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        stamp = std::string_view(static_cast<const char*>(v), size);
      }
    }
    const std::string_view key(static_cast<const char*>(msg->key), msg->key ? msg->key_len : 0);
    const std::string_view value(static_cast<const char*>(msg->payload),
                                 msg->payload ? msg->len : 0);
    auto change = DecodeChangelogRecord(key, value, stamp);
    if (!change.ok()) {
      failure = change.status().WithContext(what + ": offset " + std::to_string(msg->offset));
      break;
    }
    ApplyChange(target, *change, &batch);
    ++result.records;
    if (change->tombstone()) ++result.tombstones;
    result.input_offset = change->input_offset;
    progress.records = result.records;
    progress.next_offset = msg->offset + 1;
    if (++pending >= options.records_per_write) {
      failure = store->Commit(&batch);
      if (!failure.ok()) break;
      pending = 0;
      if (options.progress) options.progress(progress);
    }
  }
  (void)rd_kafka_assign(rk.get(), nullptr);
  (void)rd_kafka_consumer_close(rk.get());
  CRM_RETURN_NOT_OK(failure);

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
