#include "crmstream/runtime/stamped_outputs.h"

#include <algorithm>
#include <map>

#include "crmstream/common/binary_io.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/partitioner.h"

namespace crmstream::runtime {
namespace {

constexpr size_t kStampFixedBytes = 1 + 4 + 8 + 1;
// Version 2: eight output kinds (crm.recommendations); 1 had fewer.
constexpr uint16_t kPositionsVersion = 2;

void PutBigEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | static_cast<unsigned char>(in[at + i]);
  return v;
}

}  // namespace

void EncodeOutputStamp(const OutputStamp& stamp, std::string* out) {
  out->clear();
  out->push_back(static_cast<char>(kOutputStampVersion));
  PutBigEndian(static_cast<uint32_t>(stamp.input_partition), 4, out);
  PutBigEndian(stamp.sequence, 8, out);
  const size_t app = std::min<size_t>(stamp.application.size(), 255);
  out->push_back(static_cast<char>(app));
  out->append(stamp.application.substr(0, app));
  out->append(stamp.input_topic);
}

std::optional<OutputStamp> DecodeOutputStamp(std::string_view bytes) {
  if (bytes.size() < kStampFixedBytes || static_cast<uint8_t>(bytes[0]) != kOutputStampVersion) {
    return std::nullopt;
  }
  OutputStamp s;
  s.input_partition = static_cast<int32_t>(static_cast<uint32_t>(GetBigEndian(bytes, 1, 4)));
  s.sequence = GetBigEndian(bytes, 5, 8);
  const size_t app = static_cast<unsigned char>(bytes[13]);
  if (bytes.size() < kStampFixedBytes + app) return std::nullopt;
  s.application = bytes.substr(kStampFixedBytes, app);
  s.input_topic = bytes.substr(kStampFixedBytes + app);
  return s;
}

int32_t OutputPartition(std::string_view key, int32_t input_partition, int32_t partition_count) {
  if (key.empty()) return input_partition % partition_count;
  return kafka::KeyPartition(key, partition_count);
}

// ---------------------------------------------------------------------------
// OutputPositions

OutputPositions::OutputPositions(const OutputPartitionCounts& counts) : counts_(counts) {
  size_t n = 0;
  for (int k = 0; k < kOutputKindCount; ++k) {
    first_[k] = n;
    n += static_cast<size_t>(counts[k]);
  }
  positions_.assign(n, -1);
}

size_t OutputPositions::Index(OutputKind kind, int32_t partition) const {
  return first_[static_cast<int>(kind)] + static_cast<size_t>(partition);
}

int64_t OutputPositions::get(OutputKind kind, int32_t partition) const {
  return positions_[Index(kind, partition)];
}

void OutputPositions::Advance(OutputKind kind, int32_t partition, int64_t offset) {
  int64_t& p = positions_[Index(kind, partition)];
  p = std::max(p, offset);
}

void OutputPositions::AdvanceToDelivered(const kafka::Producer& producer,
                                         const std::array<std::string, kOutputKindCount>& topics) {
  for (int k = 0; k < kOutputKindCount; ++k) {
    for (int32_t q = 0; q < counts_[k]; ++q) {
      const int64_t last = producer.LastDeliveredOffset(topics[k], q);
      if (last >= 0) Advance(static_cast<OutputKind>(k), q, last + 1);
    }
  }
}

std::string OutputPositions::Encode() const {
  std::string payload;
  BinaryWriter w(&payload);
  for (int k = 0; k < kOutputKindCount; ++k) w.Put<int32_t>(counts_[k]);
  for (int64_t p : positions_) w.Put<int64_t>(p);
  return SealBlob(BlobKind::kCheckpointMeta, kPositionsVersion, payload);
}

Result<OutputPositions> OutputPositions::Decode(std::string_view bytes,
                                                const OutputPartitionCounts& counts) {
  CRM_ASSIGN_OR_RETURN(std::string_view payload,
                       OpenBlobPayload(bytes, BlobKind::kCheckpointMeta, kPositionsVersion));
  BinaryReader in(payload);
  OutputPartitionCounts stored{};
  for (int k = 0; k < kOutputKindCount; ++k) CRM_RETURN_NOT_OK(in.Get(&stored[k]));
  if (stored != counts) {
    // The output topics changed partition counts: the positions say nothing.
    return Status::Corruption("output positions written for other output partition counts");
  }
  OutputPositions out(counts);
  for (int64_t& p : out.positions_) CRM_RETURN_NOT_OK(in.Get(&p));
  if (!in.AtEnd()) return Status::Corruption("output positions: trailing bytes");
  return out;
}

Status OutputPositions::CheckPartitionCounts(
    std::string_view bytes, const OutputPartitionCounts& counts,
    const std::array<std::string, kOutputKindCount>& topics) {
  CRM_ASSIGN_OR_RETURN(std::string_view payload,
                       OpenBlobPayload(bytes, BlobKind::kCheckpointMeta, kPositionsVersion));
  BinaryReader in(payload);
  for (int k = 0; k < kOutputKindCount; ++k) {
    int32_t stored = 0;
    CRM_RETURN_NOT_OK(in.Get(&stored));
    if (stored == counts[k]) continue;
    const std::string was = std::to_string(stored);
    return Status::InvalidArgument(
        "output topic " + topics[k] + " has " + std::to_string(counts[k]) + " partitions but had " +
        was +
        " when this engine's state was written: exactly_once places each output by the "
        "topic's partition count and finds what it delivered before by it. Either give the "
        "topic its " +
        was +
        " partitions back (recreate it), or start afresh: move the state directory away and "
        "use a new kafka.group_id (every output is then produced again from the input's "
        "beginning)");
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------
// StampingSink

StampingSink::StampingSink(KafkaSink* out, std::string application, std::string input_topic,
                           int32_t input_partition, const OutputPartitionCounts& counts)
    : out_(out),
      application_(std::move(application)),
      input_topic_(std::move(input_topic)),
      input_partition_(input_partition),
      counts_(counts) {
  stamp_.reserve(kStampFixedBytes + application_.size() + input_topic_.size());
}

void StampingSink::MarkDelivered(uint64_t sequence) {
  delivered_.insert(sequence);
  delivered_max_ = std::max(delivered_max_, sequence);
  suppressing_ = true;
}

void StampingSink::Emit(OutputKind kind, std::string_view key, std::string_view value) {
  const uint64_t sequence = next_sequence_++;
  const int k = static_cast<int>(kind);
  if (suppressing_) {
    if (sequence > delivered_max_) {
      suppressing_ = false;  // past everything the predecessor delivered
      delivered_.clear();
    } else if (delivered_.erase(sequence) > 0) {
      ++suppressed_;
      return;
    }
  }
  const int32_t partition = OutputPartition(key, input_partition_, counts_[k]);
  EncodeOutputStamp({application_, input_topic_, input_partition_, sequence}, &stamp_);
  const std::array<kafka::MessageHeader, 1> headers{
      kafka::MessageHeader{kOutputStampHeader, stamp_}};
  out_->set_origin_ms(origin_ms_);
  out_->EmitTo(kind, partition, key, value, headers);
}

void AdvanceForCheckpoint(const StampingSink& sink, const kafka::Producer& producer,
                          const std::array<std::string, kOutputKindCount>& topics,
                          OutputPositions* positions) {
  if (!sink.dropping()) positions->AdvanceToDelivered(producer, topics);
}

// ---------------------------------------------------------------------------
// FindDeliveredOutputs

Status FindDeliveredOutputs(const kafka::ClientConfig& config,
                            const std::array<std::string, kOutputKindCount>& topics,
                            const OutputPartitionCounts& counts,
                            std::span<const StampedRestore> tasks, OutputPositions* ends) {
  // Which kinds an output topic holds (two kinds may share a topic).
  std::map<std::string, std::vector<OutputKind>, std::less<>> kinds;
  for (int k = 0; k < kOutputKindCount; ++k) kinds[topics[k]].push_back(static_cast<OutputKind>(k));
  std::vector<kafka::TopicPartitionOffset> from;
  for (const auto& [topic, topic_kinds] : kinds) {
    for (int32_t q = 0; q < counts[static_cast<int>(topic_kinds[0])]; ++q) {
      int64_t start = INT64_MAX;
      for (const StampedRestore& t : tasks) {
        for (OutputKind kind : topic_kinds) {
          const int64_t p = t.from == nullptr || t.from->empty() ? -1 : t.from->get(kind, q);
          start = std::min(start, p);
        }
      }
      from.push_back({topic, q,
                      tasks.empty() ? kafka::kOffsetEnd
                      : start < 0   ? kafka::kOffsetBeginning
                                    : start});
    }
  }

  kafka::PartitionReadOptions options;
  options.client_id = "crmstream-output-scan";
  return kafka::ReadPartitionsToEnd(
      config, from, options,
      [&](std::span<const kafka::PartitionEnd> partition_ends) {
        if (ends == nullptr) return Status::OK();
        for (const auto& e : partition_ends) {
          for (OutputKind kind : kinds.find(e.topic)->second) {
            ends->Advance(kind, e.partition, e.end_offset);
          }
        }
        return Status::OK();
      },
      tasks.empty() ? std::function<Status(const kafka::MessageView&)>()
                    : [&](const kafka::MessageView& m) {
        const auto header = kafka::FindHeader(m, kOutputStampHeader);
        if (!header) return Status::OK();  // another producer's record
        const auto stamp = DecodeOutputStamp(*header);
        if (!stamp) return Status::OK();
        for (const StampedRestore& t : tasks) {
          StampingSink* sink = t.sink;
          if (stamp->input_partition != sink->input_partition() ||
              stamp->input_topic != sink->input_topic() ||
              stamp->application != sink->application() ||
              stamp->sequence < sink->next_sequence()) {
            continue;
          }
          if (t.from != nullptr && !t.from->empty()) {
            // Below the task's own position: an earlier, checkpointed output.
            bool below = false;
            for (OutputKind kind : kinds.find(m.topic())->second) {
              if (m.offset() < t.from->get(kind, m.partition())) below = true;
            }
            if (below) continue;
          }
          sink->MarkDelivered(stamp->sequence);
        }
        return Status::OK();
      });
}

}  // namespace crmstream::runtime
