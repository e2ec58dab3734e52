// Reads partitions from given offsets to their end, outside any consumer
// group: restoring state from a changelog topic, and finding which outputs a
// crashed engine had already delivered (exactly-once restart). And follows
// partitions as they grow (PartitionFollower): the engine's reader of the
// model-sync topic.
//
// "The end" is each partition's high watermark when the read begins
// (read_committed: the last stable offset), so a partition that keeps
// growing still finishes.
//
// Thread-safety: each call owns its own client; callbacks run on the
// calling thread. A PartitionFollower is used from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/consumer.h"

namespace crmstream::kafka {

// The value of the last header named `name`, if the message has one.
std::optional<std::string_view> FindHeader(const MessageView& message, std::string_view name);

struct PartitionReadOptions {
  // client.id of the reading client.
  std::string client_id = "crmstream-reader";
  // Bound on the whole read: Unavailable naming the partition and offset
  // reached if some partition has not reached its end by then.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
};

struct PartitionEnd {
  std::string topic;
  int32_t partition = 0;
  int64_t start_offset = 0;  // where reading began (the low watermark for kOffsetBeginning)
  int64_t end_offset = 0;    // the high watermark when the read began
};

// Calls `on_ends` once with every partition's start and end (before the
// first message), then `on_message` for every record from each partition's
// offset (its beginning for kOffsetBeginning, nothing for kOffsetEnd) to
// its end; without `on_message`, only the ends are read. A non-OK
// Status from a callback stops the read and is returned.
Status ReadPartitionsToEnd(const ClientConfig& config, std::span<const TopicPartitionOffset> from,
                           const PartitionReadOptions& options,
                           const std::function<Status(std::span<const PartitionEnd>)>& on_ends,
                           const std::function<Status(const MessageView&)>& on_message);

struct PartitionFollowOptions {
  // client.id of the following client.
  std::string client_id = "crmstream-follower";
  // What librdkafka may prefetch (queued.max.messages.kbytes): the bound on
  // the follower's memory besides what the caller keeps. Default 2 MiB.
  int queue_kbytes = 2048;
};

// A client assigned partitions from given offsets (no group: nothing is
// committed), polled without blocking longer than asked.
class PartitionFollower {
 public:
  using OnMessage = std::function<Status(const MessageView&)>;

  // Each partition from its offset (kOffsetBeginning: its low watermark).
  static Result<std::unique_ptr<PartitionFollower>> Create(
      const ClientConfig& config, std::span<const TopicPartitionOffset> from,
      const PartitionFollowOptions& options = {});
  ~PartitionFollower();
  PartitionFollower(const PartitionFollower&) = delete;
  PartitionFollower& operator=(const PartitionFollower&) = delete;

  // Hands up to `max_messages` records to `on_message`, waiting up to
  // `timeout` for the first; returns how many. Errors the client retries
  // (a broker unreachable) are not errors here; others are returned, as is
  // a non-OK Status of `on_message` (the record then counts as read).
  Result<size_t> Poll(std::chrono::milliseconds timeout, size_t max_messages,
                      const OnMessage& on_message);
  // Polls until every partition reaches the high watermark it has now,
  // within `timeout` (Unavailable past it).
  Status ReadToEnd(std::chrono::milliseconds timeout, const OnMessage& on_message);
  // The next offset of partition `i` (of `from`) to hand out: its start
  // until a record is read (-1 while that is kOffsetBeginning).
  int64_t next_offset(size_t i) const { return partitions_[i].offset; }

 private:
  PartitionFollower() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<TopicPartitionOffset> partitions_;
};

}  // namespace crmstream::kafka
