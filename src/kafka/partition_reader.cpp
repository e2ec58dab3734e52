#include "crmstream/kafka/partition_reader.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "crmstream/kafka/handles.h"
#include "crmstream/kafka/kafka_error.h"

namespace crmstream::kafka {
namespace {

using Clock = std::chrono::steady_clock;

std::string Describe(const std::string& topic, int32_t partition) {
  return topic + " [" + std::to_string(partition) + "]";
}

// A consumer client for manual assignment. The consumer API needs a group
// id even then; nothing is committed under it and no group is joined.
Result<KafkaHandle> ManualConsumer(ClientConfig effective, const std::string& client_id,
                                   std::string_view what) {
  effective.SetDefault("group.id", client_id);
  CRM_ASSIGN_OR_RETURN(ConfHandle conf, effective.BuildConf());
  RouteLogsToSpdlog(conf.get());
  std::array<char, 512> errstr{};
  KafkaHandle rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size()));
  if (!rk) return Status::InvalidArgument(std::string(what) + ": " + errstr.data());
  conf.release();  // owned by the client now
  rd_kafka_poll_set_consumer(rk.get());
  return rk;
}

}  // namespace

std::optional<std::string_view> FindHeader(const MessageView& message, std::string_view name) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(message.raw(), &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  const void* value = nullptr;
  size_t size = 0;
  // rd_kafka_header_get_last takes a NUL-terminated name: copied on the
  // stack when short (a restore looks up two headers per record).
  std::array<char, 64> small{};
  std::string large;
  const char* key = small.data();
  if (name.size() < small.size()) {
    std::copy(name.begin(), name.end(), small.begin());
  } else {
    large.assign(name);
    key = large.c_str();
  }
  if (rd_kafka_header_get_last(headers, key, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), value ? size : 0);
}

Status ReadPartitionsToEnd(const ClientConfig& config, std::span<const TopicPartitionOffset> from,
                           const PartitionReadOptions& options,
                           const std::function<Status(std::span<const PartitionEnd>)>& on_ends,
                           const std::function<Status(const MessageView&)>& on_message) {
  const Clock::time_point deadline = Clock::now() + options.timeout;
  ClientConfig effective = config;
  effective.SetDefault("client.id", options.client_id);
  effective.Set("isolation.level", "read_committed");
  effective.Set("enable.partition.eof", "true");
  effective.Set("enable.auto.commit", "false");
  effective.Set("enable.auto.offset.store", "false");
  effective.SetDefault("auto.offset.reset", "earliest");
  // The end is detected by an empty fetch at the end offset: do not let the
  // broker hold that fetch for the default 500 ms.
  effective.SetDefault("fetch.wait.max.ms", "10");
  // librdkafka 2.0 stops fetching a partition once its queue holds
  // queued.min.messages (default 100,000) and looks again up to a second
  // later: a reader slower than the fetch (a changelog restore of small
  // records) idled most of that second. Only the queue's bytes
  // (queued.max.messages.kbytes) bound it now: librdkafka's maximum count.
  effective.SetDefault("queued.min.messages", "10000000");
  CRM_ASSIGN_OR_RETURN(KafkaHandle rk,
                       ManualConsumer(std::move(effective), options.client_id, "partition reader"));

  std::vector<PartitionEnd> ends;
  ends.reserve(from.size());
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(from.size())));
  for (const TopicPartitionOffset& p : from) {
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    // Metadata may lag right after a broker restart: retry within the deadline.
    do {
      err = rd_kafka_query_watermark_offsets(rk.get(), p.topic.c_str(), p.partition, &low, &high,
                                             5000);
    } while (err != RD_KAFKA_RESP_ERR_NO_ERROR && KafkaErrorCode(err) == StatusCode::kUnavailable &&
             Clock::now() < deadline);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(err, Describe(p.topic, p.partition) + ": end offset");
    }
    const int64_t start = p.offset == kOffsetEnd ? high
                          : p.offset < 0         ? low
                                                 : std::max(p.offset, low);
    ends.push_back({p.topic, p.partition, start, high});
    if (start < high) {
      rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset = start;
    }
  }
  if (on_ends) CRM_RETURN_NOT_OK(on_ends(ends));
  if (!on_message) return Status::OK();
  size_t open = static_cast<size_t>(list->cnt);
  if (open == 0) return Status::OK();
  rd_kafka_resp_err_t err = rd_kafka_assign(rk.get(), list.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "partition reader: assign");

  auto end_of = [&](std::string_view topic, int32_t partition) -> PartitionEnd* {
    for (auto& e : ends) {
      if (e.partition == partition && e.topic == topic) return &e;
    }
    return nullptr;
  };
  // Next offset reached per partition (the start until a record is read).
  std::vector<int64_t> reached(ends.size());
  for (size_t i = 0; i < ends.size(); ++i) reached[i] = ends[i].start_offset;
  std::vector<bool> done(ends.size());
  for (size_t i = 0; i < ends.size(); ++i) done[i] = ends[i].start_offset >= ends[i].end_offset;
  auto finish = [&](PartitionEnd* e, int64_t next) {
    const size_t i = static_cast<size_t>(e - ends.data());
    reached[i] = std::max(reached[i], next);
    if (!done[i] && reached[i] >= e->end_offset) {
      done[i] = true;
      --open;
    }
  };

  // Messages are taken from the queue a batch at a time: one wait for the
  // first, then what is queued behind it without waiting (a poll per
  // message took the queue's lock and read the clock per record). Safe here,
  // unlike in a group member (Consumer::ConsumeInto): nothing pauses, seeks
  // or rebalances this reader's partitions while it reads.
  QueueHandle queue(rd_kafka_queue_get_consumer(rk.get()));
  std::array<rd_kafka_message_t*, 1024> slots{};
  const rd_kafka_topic_t* last_rkt = nullptr;
  int32_t last_partition = -1;
  PartitionEnd* last_end = nullptr;
  Status failure;
  while (open > 0 && failure.ok()) {
    if (Clock::now() >= deadline) {
      for (size_t i = 0; i < ends.size(); ++i) {
        if (done[i]) continue;
        failure = Status::Unavailable(
            Describe(ends[i].topic, ends[i].partition) + ": end not reached within " +
            std::to_string(options.timeout.count()) + " ms (at offset " +
            std::to_string(reached[i]) + " of " + std::to_string(ends[i].end_offset) + ")");
        break;
      }
      break;
    }
    rd_kafka_message_t* first = rd_kafka_consume_queue(queue.get(), 100);
    if (first == nullptr) continue;
    slots[0] = first;
    size_t n = 1;
    const ssize_t more =
        rd_kafka_consume_batch_queue(queue.get(), 0, slots.data() + 1, slots.size() - 1);
    if (more > 0) n += static_cast<size_t>(more);
    for (size_t i = 0; i < n; ++i) {
      MessageHandle msg(slots[i]);  // each one freed, also after a failure
      if (!failure.ok()) continue;
      if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // With read_committed, aborted records and markers may end a
        // partition below its high watermark: EOF is the end either way.
        if (PartitionEnd* e = end_of(rd_kafka_topic_name(msg->rkt), msg->partition)) {
          finish(e, e->end_offset);
        }
        continue;
      }
      if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (KafkaErrorCode(msg->err) == StatusCode::kUnavailable) continue;  // librdkafka retries
        failure = KafkaStatus(msg->err, "partition reader");
        continue;
      }
      const MessageView view(msg.get());
      // Records come in runs of one partition: its topic name is compared once a run.
      if (msg->rkt != last_rkt || msg->partition != last_partition) {
        last_rkt = msg->rkt;
        last_partition = msg->partition;
        last_end = end_of(view.topic(), view.partition());
      }
      PartitionEnd* e = last_end;
      if (e == nullptr || view.offset() >= e->end_offset) continue;  // beyond the end: not ours
      failure = on_message(view);
      if (failure.ok()) finish(e, view.offset() + 1);
    }
  }
  queue.reset();
  (void)rd_kafka_assign(rk.get(), nullptr);
  (void)rd_kafka_consumer_close(rk.get());
  return failure;
}

struct PartitionFollower::Impl {
  KafkaHandle rk;
};

Result<std::unique_ptr<PartitionFollower>> PartitionFollower::Create(
    const ClientConfig& config, std::span<const TopicPartitionOffset> from,
    const PartitionFollowOptions& options) {
  ClientConfig effective = config;
  effective.SetDefault("client.id", options.client_id);
  effective.Set("enable.partition.eof", "false");
  effective.Set("enable.auto.commit", "false");
  effective.Set("enable.auto.offset.store", "false");
  effective.Set("queued.max.messages.kbytes", std::to_string(options.queue_kbytes));
  effective.SetDefault("fetch.message.max.bytes",
                       std::to_string(std::min(options.queue_kbytes, 1024) * 1024));
  CRM_ASSIGN_OR_RETURN(KafkaHandle rk, ManualConsumer(std::move(effective), options.client_id,
                                                      "partition follower"));
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(from.size())));
  for (const TopicPartitionOffset& p : from) {
    rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)->offset = p.offset;
  }
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_assign(rk.get(), list.get()), "partition follower: assign"));
  std::unique_ptr<PartitionFollower> follower(new PartitionFollower());
  follower->impl_ = std::make_unique<Impl>();
  follower->impl_->rk = std::move(rk);
  follower->partitions_.assign(from.begin(), from.end());
  return follower;
}

PartitionFollower::~PartitionFollower() {
  if (impl_ && impl_->rk) {
    (void)rd_kafka_assign(impl_->rk.get(), nullptr);
    (void)rd_kafka_consumer_close(impl_->rk.get());
  }
}

Result<size_t> PartitionFollower::Poll(std::chrono::milliseconds timeout, size_t max_messages,
                                       const OnMessage& on_message) {
  size_t read = 0;
  int wait_ms = static_cast<int>(timeout.count());
  while (read < max_messages) {
    MessageHandle msg(rd_kafka_consumer_poll(impl_->rk.get(), wait_ms));
    wait_ms = 0;  // only the first record is waited for
    if (!msg) break;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (KafkaErrorCode(msg->err) == StatusCode::kUnavailable) continue;  // librdkafka retries
      return KafkaStatus(msg->err, "partition follower");
    }
    const MessageView view(msg.get());
    for (TopicPartitionOffset& p : partitions_) {
      if (p.partition == view.partition() && p.topic == view.topic()) {
        p.offset = std::max(p.offset, view.offset() + 1);
      }
    }
    ++read;
    CRM_RETURN_NOT_OK(on_message(view));
  }
  return read;
}

Status PartitionFollower::ReadToEnd(std::chrono::milliseconds timeout,
                                    const OnMessage& on_message) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<int64_t> lows, ends;
  for (const TopicPartitionOffset& p : partitions_) {
    int64_t low = 0, high = 0;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    CRM_RETURN_NOT_OK(KafkaStatus(
        rd_kafka_query_watermark_offsets(impl_->rk.get(), p.topic.c_str(), p.partition, &low, &high,
                                         static_cast<int>(std::max<int64_t>(1, left))),
        Describe(p.topic, p.partition) + ": end offset"));
    lows.push_back(low);
    ends.push_back(high);
  }
  for (;;) {
    bool done = true;
    for (size_t i = 0; i < ends.size(); ++i) {
      // An empty partition is done whatever its start (kOffsetBeginning too).
      if (ends[i] > lows[i] && partitions_[i].offset < ends[i]) done = false;
    }
    if (done) return Status::OK();
    if (Clock::now() >= deadline) {
      return Status::Unavailable("partition follower: end not reached within " +
                                 std::to_string(timeout.count()) + " ms");
    }
    CRM_RETURN_NOT_OK(Poll(std::chrono::milliseconds(100), SIZE_MAX, on_message).status());
  }
}

}  // namespace crmstream::kafka
