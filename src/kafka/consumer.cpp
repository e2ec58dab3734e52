#include "crmstream/kafka/consumer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#include "crmstream/kafka/kafka_error.h"

namespace crmstream::kafka {
namespace {

using Clock = std::chrono::steady_clock;

PartitionListHandle MakeList(std::span<const TopicPartitionOffset> entries) {
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(entries.size())));
  for (const TopicPartitionOffset& entry : entries) {
    rd_kafka_topic_partition_list_add(list.get(), entry.topic.c_str(), entry.partition)->offset =
        entry.offset;
  }
  return list;
}

PartitionListHandle MakeList(std::span<const TopicPartition> entries) {
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(entries.size())));
  for (const TopicPartition& entry : entries) {
    rd_kafka_topic_partition_list_add(list.get(), entry.topic.c_str(), entry.partition);
  }
  return list;
}

// The first per-partition error in a list, as a Status naming the partition.
Status FirstPartitionError(const rd_kafka_topic_partition_list_t* list,
                           std::string_view operation) {
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(tp.err, std::string(operation) + " " + tp.topic + "[" +
                                     std::to_string(tp.partition) + "]");
    }
  }
  return Status::OK();
}

}  // namespace

MessageBatch::MessageBatch(size_t capacity) : scratch_(std::max<size_t>(capacity, 1)) {
  messages_.reserve(scratch_.size());
}

Result<std::unique_ptr<Consumer>> Consumer::Create(const ClientConfig& config,
                                                   const std::string& group_id,
                                                   const ConsumerOptions& options) {
  if (group_id.empty()) return Status::InvalidArgument("consumer: group.id must not be empty");
  ClientConfig effective = config;
  effective.Set("group.id", group_id);
  effective.SetDefault("client.id", "crmstream-consumer");
  effective.SetDefault("auto.offset.reset", options.auto_offset_reset);
  effective.SetDefault("isolation.level", "read_committed");
  effective.SetDefault("enable.partition.eof", "false");
  // The engine commits offsets itself, together with its state checkpoints.
  effective.Set("enable.auto.commit", "false");
  effective.Set("enable.auto.offset.store", "false");
  CRM_ASSIGN_OR_RETURN(ConfHandle conf, effective.BuildConf());
  RouteLogsToSpdlog(conf.get());
  // librdkafka before 2.3.0 aborts when a cooperative-sticky member is
  // destroyed before its first assignment (librdkafka issue #4312): Close()
  // then waits for it (AwaitFirstSync).
  const auto strategy = effective.Get("partition.assignment.strategy");
  const bool guard_close = strategy &&
                           strategy->find("cooperative-sticky") != std::string_view::npos &&
                           rd_kafka_version() < 0x020300ff;

  std::unique_ptr<Consumer> consumer(new Consumer());
  consumer->listener_ = options.listener;
  consumer->guard_close_ = guard_close;
  rd_kafka_conf_set_rebalance_cb(conf.get(), &Consumer::OnRebalance);
  rd_kafka_conf_set_offset_commit_cb(conf.get(), &Consumer::OnCommit);
  rd_kafka_conf_set_opaque(conf.get(), consumer.get());

  std::array<char, 512> errstr{};
  consumer->rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr.data(), errstr.size()));
  if (!consumer->rk_) return Status::InvalidArgument(std::string("consumer: ") + errstr.data());
  conf.release();  // owned by the client now

  // One queue carries messages, rebalances, errors and commit results, so a
  // single ConsumeBatch call serves them all on the consumer's thread.
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_poll_set_consumer(consumer->rk_.get()), "consumer: poll_set_consumer"));
  consumer->queue_.reset(rd_kafka_queue_get_consumer(consumer->rk_.get()));
  consumer->wake_ =
      std::make_shared<ConsumerWake>(QueueHandle(rd_kafka_queue_get_consumer(consumer->rk_.get())));
  return consumer;
}

Consumer::~Consumer() {
  // The listener is often the consumer's owner, partly destroyed by now: the
  // final revoke is reported only by an explicit Close().
  listener_ = nullptr;
  Status st = Close();
  if (!st.ok()) spdlog::warn("consumer: close on destruction: {}", st.ToString());
  queue_.reset();
  rk_.reset();
}

Status Consumer::Subscribe(std::span<const std::string> topics) {
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const std::string& topic : topics) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  return KafkaStatus(rd_kafka_subscribe(rk_.get(), list.get()), "consumer: subscribe");
}

Status Consumer::Assign(std::span<const TopicPartitionOffset> partitions) {
  handed_out_.clear();
  PartitionListHandle list = MakeList(partitions);
  return KafkaStatus(rd_kafka_assign(rk_.get(), list.get()), "consumer: assign");
}

void Consumer::OnRebalance(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  static_cast<Consumer*>(opaque)->HandleRebalance(err, partitions);
}

void Consumer::HandleRebalance(rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t* partitions) {
  rebalances_.fetch_add(1, std::memory_order_relaxed);
  // Assigned or revoked, a partition starts anew (another member may have
  // moved it on, or it restarts where the listener chooses).
  for (int i = 0; i < partitions->cnt; ++i) {
    ForgetHandedOut(partitions->elems[i].topic, partitions->elems[i].partition);
  }
  const char* protocol = rd_kafka_rebalance_protocol(rk_.get());
  const bool cooperative = protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;

  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    assigned_scratch_.clear();
    for (int i = 0; i < partitions->cnt; ++i) {
      assigned_scratch_.push_back(
          {partitions->elems[i].topic, partitions->elems[i].partition, kOffsetCommitted});
    }
    if (listener_ != nullptr) {
      // We are inside a C callback: an exception must not unwind through it.
      try {
        listener_->OnAssigned(assigned_scratch_);
      } catch (const std::exception& e) {
        spdlog::error("consumer: rebalance listener OnAssigned threw: {}", e.what());
      }
      for (int i = 0; i < partitions->cnt; ++i) {
        partitions->elems[i].offset = assigned_scratch_[static_cast<size_t>(i)].offset;
      }
    }
    if (cooperative) {
      ErrorHandle error(rd_kafka_incremental_assign(rk_.get(), partitions));
      Status st = KafkaStatus(error.get(), "consumer: incremental assign");
      if (!st.ok()) spdlog::error("{}", st.ToString());
    } else {
      Status st = KafkaStatus(rd_kafka_assign(rk_.get(), partitions), "consumer: assign");
      if (!st.ok()) spdlog::error("{}", st.ToString());
    }
    return;
  }

  if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    revoked_scratch_.clear();
    for (int i = 0; i < partitions->cnt; ++i) {
      revoked_scratch_.push_back({partitions->elems[i].topic, partitions->elems[i].partition});
    }
    if (listener_ != nullptr) {
      try {
        if (rd_kafka_assignment_lost(rk_.get())) {
          listener_->OnLost(revoked_scratch_);
        } else {
          listener_->OnRevoked(revoked_scratch_);
        }
      } catch (const std::exception& e) {
        spdlog::error("consumer: rebalance listener OnRevoked threw: {}", e.what());
      }
    }
    if (cooperative) {
      ErrorHandle error(rd_kafka_incremental_unassign(rk_.get(), partitions));
      Status st = KafkaStatus(error.get(), "consumer: incremental unassign");
      if (!st.ok()) spdlog::error("{}", st.ToString());
    } else {
      Status st = KafkaStatus(rd_kafka_assign(rk_.get(), nullptr), "consumer: unassign");
      if (!st.ok()) spdlog::error("{}", st.ToString());
    }
    return;
  }

  // A failed rebalance: drop the assignment so the group can recover.
  spdlog::error("consumer: rebalance failed: {}", rd_kafka_err2str(err));
  last_consume_error_.store(err, std::memory_order_relaxed);
  consume_errors_.fetch_add(1, std::memory_order_relaxed);
  if (cooperative) {
    ErrorHandle error(rd_kafka_incremental_unassign(rk_.get(), partitions));
  } else {
    (void)rd_kafka_assign(rk_.get(), nullptr);
  }
}

void Consumer::OnCommit(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  auto* self = static_cast<Consumer*>(opaque);
  // NO_OFFSET: there was nothing to commit, not a failure.
  if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && offsets != nullptr) {
    for (int i = 0; i < offsets->cnt; ++i) {
      if (offsets->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = offsets->elems[i].err;
        break;
      }
    }
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->commit_failures_.fetch_add(1, std::memory_order_relaxed);
    self->last_commit_error_.store(err, std::memory_order_relaxed);
  }
}

Result<size_t> Consumer::ConsumeInto(int timeout_ms, MessageBatch* batch) {
  if (closed_) return Status::Aborted("consumer: closed");
  const size_t room = batch->scratch_.size() - batch->messages_.size();
  if (room == 0) return size_t{0};
  rd_kafka_message_t** slots = batch->scratch_.data();

  // Wait for the first message only, then drain whatever is queued behind
  // it without waiting. The wait comes first: it is what a yield
  // (Producer::WakeOnDelivery) cuts short, and a drain of an empty queue
  // would clear a pending yield and let the wait run its course.
  //
  // One record per call, never consume_batch_queue: librdkafka before 2.1
  // (its #4208) counts a record as handed out when the batch call collects
  // it, and drops it again if a pause's barrier follows in the same call. A
  // group pauses the assignment for every rebalance callback (from its own
  // thread) and resumes at the last offset handed out, so a partition kept
  // through a rebalance skipped the dropped records: lost, without an error.
  // A single pop hands out exactly what it counts.
  ssize_t n = 0;
  // A repeat is dropped as it is popped: a rebalance served by a later pop
  // forgets the partitions it moves, whose records then start anew.
  const auto take = [&](rd_kafka_message_t* message) {
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR && Repeated(*message)) {
      rd_kafka_message_destroy(message);
    } else {
      slots[n++] = message;
    }
  };
  rd_kafka_message_t* first = rd_kafka_consume_queue(queue_.get(), timeout_ms);
  if (first == nullptr) {
    const rd_kafka_resp_err_t err = rd_kafka_last_error();
    if (err != RD_KAFKA_RESP_ERR__TIMED_OUT && err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaStatus(err, "consumer: consume");
    }
  } else {
    take(first);
    // Pops, repeats included, bounded by the room: a queue of repeats only
    // takes no more than a batch's worth of one call.
    for (size_t popped = 1; popped < room; ++popped) {
      rd_kafka_message_t* next = rd_kafka_consume_queue(queue_.get(), 0);
      if (next == nullptr) break;
      take(next);
    }
  }

  size_t added = 0;
  bool fatal = false;
  for (ssize_t i = 0; i < n; ++i) {
    MessageHandle message(slots[i]);
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      batch->messages_.push_back(std::move(message));  // capacity reserved: no allocation
      ++added;
      continue;
    }
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
    consume_errors_.fetch_add(1, std::memory_order_relaxed);
    const int previous = last_consume_error_.exchange(message->err, std::memory_order_relaxed);
    // Said once per kind and then at most every 10 s: a group that cannot
    // be joined (e.g. a session timeout the brokers refuse) is otherwise
    // silent, and a persistent error must not flood the log.
    const auto now = std::chrono::steady_clock::now();
    if (previous != message->err || now - last_error_logged_ >= std::chrono::seconds(10)) {
      last_error_logged_ = now;
      spdlog::warn("consumer: {} ({})", rd_kafka_message_errstr(message.get()),
                   rd_kafka_err2name(message->err));
    }
    if (message->err == RD_KAFKA_RESP_ERR__FATAL) fatal = true;
  }
  if (fatal) {
    std::array<char, 512> errstr{};
    const rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk_.get(), errstr.data(), errstr.size());
    return Status::Internal(std::string("consumer: fatal error: ") + errstr.data() + " (" +
                            rd_kafka_err2name(err) + ")");
  }
  return added;
}

bool Consumer::Repeated(const rd_kafka_message_t& message) {
  // A pause (every rebalance callback comes with one, from librdkafka's
  // thread) that reads the offset to resume at just before a pop counts the
  // record popped resumes there: it comes again. Its second copy is dropped.
  if (last_handed_out_ >= handed_out_.size() || handed_out_[last_handed_out_].rkt != message.rkt ||
      handed_out_[last_handed_out_].partition != message.partition) {
    const auto it = std::find_if(handed_out_.begin(), handed_out_.end(), [&](const HandedOut& h) {
      return h.rkt == message.rkt && h.partition == message.partition;
    });
    if (it == handed_out_.end()) {
      handed_out_.push_back(
          {message.rkt, rd_kafka_topic_name(message.rkt), message.partition, message.offset + 1});
      last_handed_out_ = handed_out_.size() - 1;
      return false;
    }
    last_handed_out_ = static_cast<size_t>(it - handed_out_.begin());
  }
  HandedOut& h = handed_out_[last_handed_out_];
  if (message.offset < h.next) {
    redelivered_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  h.next = message.offset + 1;
  return false;
}

void Consumer::ForgetHandedOut(std::string_view topic, int32_t partition) {
  std::erase_if(handed_out_,
                [&](const HandedOut& h) { return h.partition == partition && h.topic == topic; });
  last_handed_out_ = 0;
}

Result<size_t> Consumer::ConsumeBatch(int timeout_ms, MessageBatch* batch) {
  batch->Clear();
  return ConsumeInto(timeout_ms, batch);
}

Result<bool> Consumer::WaitForAssignment(std::chrono::milliseconds timeout, MessageBatch* batch) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    CRM_ASSIGN_OR_RETURN(std::vector<TopicPartition> assignment, Assignment());
    if (!assignment.empty()) return true;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || batch->size() == batch->capacity()) return false;
    CRM_ASSIGN_OR_RETURN(size_t added,
                         ConsumeInto(static_cast<int>(std::min<int64_t>(left, 100)), batch));
    (void)added;
  }
}

Status Consumer::CommitOffsets(std::span<const TopicPartitionOffset> offsets, bool async) {
  if (offsets.empty()) return Status::OK();
  PartitionListHandle list = MakeList(offsets);
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_commit(rk_.get(), list.get(), async ? 1 : 0), "consumer: commit"));
  if (!async) return FirstPartitionError(list.get(), "consumer: commit");
  return Status::OK();
}

Result<std::vector<TopicPartitionOffset>> Consumer::Committed(
    std::span<const TopicPartition> partitions, std::chrono::milliseconds timeout) {
  PartitionListHandle list = MakeList(partitions);
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_committed(rk_.get(), list.get(), static_cast<int>(timeout.count())),
                  "consumer: committed"));
  CRM_RETURN_NOT_OK(FirstPartitionError(list.get(), "consumer: committed"));
  std::vector<TopicPartitionOffset> result;
  result.reserve(static_cast<size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) {
    result.push_back({list->elems[i].topic, list->elems[i].partition, list->elems[i].offset});
  }
  return result;
}

Status Consumer::Seek(const TopicPartitionOffset& position, std::chrono::milliseconds timeout) {
  ForgetHandedOut(position.topic, position.partition);
  PartitionListHandle list = MakeList(std::span<const TopicPartitionOffset>(&position, 1));
  // librdkafka before 2.1.0 waits the timeout in microseconds for the seek's
  // reply (its #4230): a seek that took over 10 ms of a 10 s timeout (during
  // a rebalance) failed as timed out, which stopped the engine's rewind
  // after an aborted transaction. There the value is scaled back.
  int64_t timeout_arg = timeout.count();
  if (rd_kafka_version() < 0x02010000) timeout_arg = std::min<int64_t>(timeout_arg * 1000, INT_MAX);
  ErrorHandle error(rd_kafka_seek_partitions(rk_.get(), list.get(), static_cast<int>(timeout_arg)));
  CRM_RETURN_NOT_OK(KafkaStatus(error.get(), "consumer: seek"));
  return FirstPartitionError(list.get(), "consumer: seek");
}

Result<std::vector<TopicPartition>> Consumer::Assignment() const {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  CRM_RETURN_NOT_OK(KafkaStatus(rd_kafka_assignment(rk_.get(), &raw), "consumer: assignment"));
  PartitionListHandle list(raw);
  std::vector<TopicPartition> result;
  result.reserve(static_cast<size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) {
    result.push_back({list->elems[i].topic, list->elems[i].partition});
  }
  return result;
}

Result<std::vector<PartitionLag>> Consumer::LagSnapshot() const {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  CRM_RETURN_NOT_OK(KafkaStatus(rd_kafka_assignment(rk_.get(), &raw), "consumer: assignment"));
  PartitionListHandle list(raw);
  CRM_RETURN_NOT_OK(KafkaStatus(rd_kafka_position(rk_.get(), list.get()), "consumer: position"));
  std::vector<PartitionLag> result;
  result.reserve(static_cast<size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    PartitionLag lag;
    lag.topic = tp.topic;
    lag.partition = tp.partition;
    lag.position = tp.offset >= 0 ? tp.offset : -1;
    int64_t low = -1;
    int64_t high = -1;
    if (rd_kafka_get_watermark_offsets(rk_.get(), tp.topic, tp.partition, &low, &high) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        high >= 0) {
      lag.high_watermark = high;
    }
    if (lag.position >= 0 && lag.high_watermark >= 0) {
      lag.lag = std::max<int64_t>(0, lag.high_watermark - lag.position);
    }
    result.push_back(std::move(lag));
  }
  return result;
}

Result<int64_t> Consumer::Lag(const std::string& topic, int32_t partition) const {
  PartitionListHandle list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition);
  CRM_RETURN_NOT_OK(KafkaStatus(rd_kafka_position(rk_.get(), list.get()), "consumer: position"));
  const int64_t position = list->elems[0].offset;
  int64_t low = -1;
  int64_t high = -1;
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_get_watermark_offsets(rk_.get(), topic.c_str(), partition, &low, &high),
                  "consumer: watermarks of " + topic + "[" + std::to_string(partition) + "]"));
  // An empty partition (or one emptied by retention) has nothing to consume.
  if (position < 0 && high >= 0 && high == low) return int64_t{0};
  if (position < 0 || high < 0) {
    return Status::Unavailable("consumer: lag of " + topic + "[" + std::to_string(partition) +
                               "] not known yet (nothing consumed or fetched)");
  }
  return std::max<int64_t>(0, high - position);
}

Result<int64_t> Consumer::HighWatermark(const std::string& topic, int32_t partition) const {
  int64_t low = -1;
  int64_t high = -1;
  CRM_RETURN_NOT_OK(
      KafkaStatus(rd_kafka_get_watermark_offsets(rk_.get(), topic.c_str(), partition, &low, &high),
                  "consumer: watermarks of " + topic + "[" + std::to_string(partition) + "]"));
  if (high < 0) {
    return Status::Unavailable("consumer: end of " + topic + "[" + std::to_string(partition) +
                               "] not known yet (nothing fetched)");
  }
  return high;
}

void ConsumerWake::Yield() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_) rd_kafka_queue_yield(queue_.get());
}

void ConsumerWake::Disable() {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.reset();
}

Status Consumer::Close() {
  if (closed_ || !rk_) return Status::OK();
  closed_ = true;
  // librdkafka's close waits on the queue a wake yields: no more wakes.
  if (wake_) wake_->Disable();
  if (guard_close_) AwaitFirstSync();
  // Serves the final revoke (OnRevoked) and leaves the group.
  return KafkaStatus(rd_kafka_consumer_close(rk_.get()), "consumer: close");
}

// The JoinGroup answer picks the assignor; the first SyncGroup answer creates
// its state, just before the first rebalance callback. librdkafka before
// 2.3.0 destroys that state unchecked, and the sticky assignor asserts it
// exists: a member destroyed in between aborts the process. A member that has
// a member id (a JoinGroup was answered) and has seen no rebalance yet may be
// there, so it waits, bounded, for its first assignment. The listener has
// been told of nothing, so it is told nothing of that assignment either, nor
// of its revocation in the close that follows.
void Consumer::AwaitFirstSync() {
  if (rebalances_.load(std::memory_order_relaxed) > 0) return;
  listener_ = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + kFirstSyncWait;
  while (rebalances_.load(std::memory_order_relaxed) == 0) {
    char* member_id = rd_kafka_memberid(rk_.get());
    const bool joined = member_id != nullptr && member_id[0] != '\0';
    if (member_id != nullptr) rd_kafka_mem_free(rk_.get(), member_id);
    if (!joined) return;  // no assignor chosen: nothing to wait for
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::warn(
          "consumer: closing a cooperative-sticky member still waiting for its first "
          "assignment after {} s; librdkafka {} may abort here (librdkafka issue #4312)",
          kFirstSyncWait.count(), rd_kafka_version_str());
      return;
    }
    // Serves the rebalance callback; no partition is assigned yet, so a
    // message here is an error event or a leftover: dropped.
    rd_kafka_message_t* message = rd_kafka_consume_queue(queue_.get(), 100);
    if (message != nullptr) rd_kafka_message_destroy(message);
  }
}

Status Consumer::last_consume_error() const {
  return KafkaStatus(
      static_cast<rd_kafka_resp_err_t>(last_consume_error_.load(std::memory_order_relaxed)),
      "consumer: consume");
}

Status Consumer::last_commit_error() const {
  return KafkaStatus(
      static_cast<rd_kafka_resp_err_t>(last_commit_error_.load(std::memory_order_relaxed)),
      "consumer: commit");
}

std::string_view Consumer::rebalance_protocol() const {
  const char* protocol = rd_kafka_rebalance_protocol(rk_.get());
  return protocol != nullptr ? std::string_view(protocol) : std::string_view("NONE");
}

}  // namespace crmstream::kafka
