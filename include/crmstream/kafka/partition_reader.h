// Reads partitions from given offsets to their end, outside any consumer
// group: restoring state from a changelog topic, and finding which outputs a
// crashed engine had already delivered (exactly-once restart).
//
// "The end" is each partition's high watermark when the read begins
// (read_committed: the last stable offset), so a partition that keeps
// growing still finishes.
//
// Thread-safety: each call owns its own client; callbacks run on the
// calling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>

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

}  // namespace crmstream::kafka
