// Consumer: one member of a Kafka consumer group, for the engine's input
// topics. Offsets are committed only by the engine (enable.auto.commit=false,
// enable.auto.offset.store=false), explicitly, as the next offset to read;
// isolation.level=read_committed.
//
// Rebalances are reported to a RebalanceListener, which may choose the start
// offset of every newly assigned partition (e.g. from offsets checkpointed
// with the state in RocksDB); the consumer then performs the assignment
// itself, eagerly or incrementally as the group's protocol requires.
//
// Messages are handed out in a MessageBatch without copying: the batch owns
// librdkafka's messages and the views into them stay valid until the batch
// is cleared, refilled or destroyed.
//
// Thread-safety: a Consumer is used from ONE thread: ConsumeBatch, Commit,
// Seek, Lag and Close, and the listener's callbacks run on that thread
// (inside ConsumeBatch / WaitForAssignment / Close). The counters may be read
// from any thread. Every MessageBatch must be cleared or destroyed before its
// Consumer is closed or destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/handles.h"

namespace crmstream::kafka {

// Start offsets a RebalanceListener may choose.
inline constexpr int64_t kOffsetCommitted = RD_KAFKA_OFFSET_INVALID;  // the group's, else reset
inline constexpr int64_t kOffsetBeginning = RD_KAFKA_OFFSET_BEGINNING;
inline constexpr int64_t kOffsetEnd = RD_KAFKA_OFFSET_END;

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

struct TopicPartitionOffset {
  std::string topic;
  int32_t partition = 0;
  // For commits: the next offset to read (last processed + 1).
  int64_t offset = kOffsetCommitted;
};

// Receives partition assignment changes. Called on the consumer's thread,
// from inside ConsumeBatch, WaitForAssignment or Close. Must not throw.
class RebalanceListener {
 public:
  virtual ~RebalanceListener() = default;
  // Partitions newly given to this member. Each entry's offset is
  // kOffsetCommitted on entry (resume from the group's committed offset, else
  // auto.offset.reset); the listener may overwrite it with an explicit start
  // offset (or kOffsetBeginning / kOffsetEnd). The assignment is made after
  // this returns.
  virtual void OnAssigned(std::span<TopicPartitionOffset> partitions) = 0;
  // Partitions taken away (a rebalance or Close). Commit what was processed
  // for them now: after this returns they may belong to another member.
  virtual void OnRevoked(std::span<const TopicPartition> partitions) = 0;
  // Partitions lost without an orderly revoke (session timed out); their
  // offsets can no longer be committed. Default: treated as revoked.
  virtual void OnLost(std::span<const TopicPartition> partitions) { OnRevoked(partitions); }
};

// A view of one consumed message; valid while its MessageBatch holds it.
class MessageView {
 public:
  explicit MessageView(const rd_kafka_message_t* message) : m_(message) {}
  std::string_view topic() const { return rd_kafka_topic_name(m_->rkt); }
  int32_t partition() const { return m_->partition; }
  int64_t offset() const { return m_->offset; }
  std::string_view key() const {
    return m_->key ? std::string_view(static_cast<const char*>(m_->key), m_->key_len)
                   : std::string_view();
  }
  std::string_view payload() const {
    return m_->payload ? std::string_view(static_cast<const char*>(m_->payload), m_->len)
                       : std::string_view();
  }
  // Milliseconds since the epoch (create or log-append time), -1 if unknown.
  int64_t timestamp_ms() const { return rd_kafka_message_timestamp(m_, nullptr); }
  const rd_kafka_message_t* raw() const { return m_; }

 private:
  const rd_kafka_message_t* m_;
};

// Owns up to `capacity` consumed messages. Storage is reserved once, so
// refilling a batch allocates nothing on our side.
class MessageBatch {
 public:
  explicit MessageBatch(size_t capacity = 1024);
  MessageBatch(const MessageBatch&) = delete;
  MessageBatch& operator=(const MessageBatch&) = delete;
  MessageBatch(MessageBatch&&) noexcept = default;
  MessageBatch& operator=(MessageBatch&&) noexcept = default;

  size_t size() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }
  size_t capacity() const { return scratch_.size(); }
  MessageView operator[](size_t i) const { return MessageView(messages_[i].get()); }
  // Destroys the held messages (returns their memory to librdkafka).
  void Clear() { messages_.clear(); }

 private:
  friend class Consumer;
  std::vector<MessageHandle> messages_;
  std::vector<rd_kafka_message_t*> scratch_;  // librdkafka fills this, then ownership moves
};

struct ConsumerOptions {
  // auto.offset.reset when the group has no committed offset. Default
  // "earliest" (process what is there rather than skip it).
  std::string auto_offset_reset = "earliest";
  // Receives assignment changes; not owned, must outlive the consumer. With
  // none, assignments simply resume from committed offsets.
  RebalanceListener* listener = nullptr;
};

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t position = -1;        // next offset this consumer will return, -1 unknown
  int64_t high_watermark = -1;  // cached from the last fetch, -1 unknown
  int64_t lag = -1;             // high_watermark - position, -1 unknown
};

// What ends a consumer's wait for records from another client's thread
// (Producer::WakeOnDelivery). Shared by the consumer and the producers that
// wake it; the consumer disables it before it closes, since a yield would cut
// the close's own wait short and leave the group half left.
class ConsumerWake {
 public:
  explicit ConsumerWake(QueueHandle queue) : queue_(std::move(queue)) {}
  void Yield();
  void Disable();

 private:
  std::mutex mu_;  // taken when a producer's report queue fills, and once at close
  QueueHandle queue_;
};

class Consumer {
 public:
  // group_id is required. Options and module defaults apply where `config`
  // does not set the property, except enable.auto.commit and
  // enable.auto.offset.store, which are always false.
  static Result<std::unique_ptr<Consumer>> Create(const ClientConfig& config,
                                                  const std::string& group_id,
                                                  const ConsumerOptions& options = {});
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Joins the group for these topics (replaces any earlier subscription).
  Status Subscribe(std::span<const std::string> topics);
  // Manual assignment without group management (e.g. replaying a changelog).
  Status Assign(std::span<const TopicPartitionOffset> partitions);

  // Clears `batch`, then fills it with up to batch->capacity() messages,
  // waiting at most timeout_ms for the first. Returns the number of messages.
  // Per-message errors (e.g. a broker going away) are counted and kept as
  // last_consume_error(), not returned; a fatal client error is. Each
  // partition's records come in offset order, each once, between an
  // assignment or a Seek and the next (redelivered_count() counts the
  // repeats librdkafka made and this dropped).
  Result<size_t> ConsumeBatch(int timeout_ms, MessageBatch* batch);

  // Commits explicit next offsets; synchronous unless `async`. Async results
  // are counted (commit_failures(), last_commit_error()).
  Status CommitOffsets(std::span<const TopicPartitionOffset> offsets, bool async);
  // Committed offsets of the given partitions (offset -1001 when none).
  Result<std::vector<TopicPartitionOffset>> Committed(std::span<const TopicPartition> partitions,
                                                      std::chrono::milliseconds timeout);
  // Moves the fetch position of an assigned partition.
  Status Seek(const TopicPartitionOffset& position, std::chrono::milliseconds timeout);

  // The current assignment.
  Result<std::vector<TopicPartition>> Assignment() const;
  // Lag of every assigned partition from the cached high watermark and the
  // consumer position; no broker round trip.
  Result<std::vector<PartitionLag>> LagSnapshot() const;
  // Lag of one partition; Unavailable while its position or watermark is
  // still unknown.
  Result<int64_t> Lag(const std::string& topic, int32_t partition) const;
  // The partition's high watermark as of the last fetch response (no
  // broker round trip); Unavailable until one arrived.
  Result<int64_t> HighWatermark(const std::string& topic, int32_t partition) const;

  // Polls until this member has a non-empty assignment (true) or the timeout
  // passes (false). Messages received meanwhile are appended to `batch`
  // (which is not cleared); stops early if the batch fills.
  Result<bool> WaitForAssignment(std::chrono::milliseconds timeout, MessageBatch* batch);

  // Leaves the group cleanly (OnRevoked is called for the assignment).
  // Idempotent. The destructor also leaves the group but does NOT call the
  // listener (it may be gone already): call Close() while it is alive.
  Status Close();

  uint64_t consume_errors() const { return consume_errors_.load(std::memory_order_relaxed); }
  uint64_t commit_failures() const { return commit_failures_.load(std::memory_order_relaxed); }
  uint64_t rebalance_count() const { return rebalances_.load(std::memory_order_relaxed); }
  uint64_t redelivered_count() const { return redelivered_.load(std::memory_order_relaxed); }
  Status last_consume_error() const;
  Status last_commit_error() const;
  // "EAGER", "COOPERATIVE" or "NONE" (before the first assignment).
  std::string_view rebalance_protocol() const;

  rd_kafka_t* handle() const { return rk_.get(); }
  // Producer::WakeOnDelivery's handle on this consumer's wait.
  std::shared_ptr<ConsumerWake> wake() const { return wake_; }

 private:
  Consumer() = default;
  // Consumes into the free tail of `batch`; returns messages added.
  Result<size_t> ConsumeInto(int timeout_ms, MessageBatch* batch);
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque);
  static void OnCommit(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t* offsets, void* opaque);
  void HandleRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions);
  // Whether `message` repeats a record already handed out (and if not,
  // records it as handed out).
  bool Repeated(const rd_kafka_message_t& message);
  // Forgets what was handed out of a partition: it starts anew (a seek, an
  // assignment or a revocation).
  void ForgetHandedOut(std::string_view topic, int32_t partition);
  // Close()'s wait for a cooperative-sticky member's first assignment on
  // librdkafka before 2.3.0 (consumer.cpp says why).
  void AwaitFirstSync();
  static constexpr std::chrono::seconds kFirstSyncWait{10};

  // Declaration order: the queue must be released before the client.
  KafkaHandle rk_;
  QueueHandle queue_;
  std::shared_ptr<ConsumerWake> wake_;  // disabled by Close()
  RebalanceListener* listener_ = nullptr;
  // The next offset of each partition that records were handed out of
  // (consumer thread only; a few entries, searched from the last one hit).
  struct HandedOut {
    const rd_kafka_topic_t* rkt;  // compared per record
    std::string topic;            // compared when forgotten
    int32_t partition;
    int64_t next;
  };
  std::vector<HandedOut> handed_out_;
  size_t last_handed_out_ = 0;
  std::atomic<uint64_t> redelivered_{0};
  bool closed_ = false;
  bool guard_close_ = false;  // AwaitFirstSync at Close
  // Scratch for rebalance callbacks (rebalances are rare; reuse keeps it simple).
  std::vector<TopicPartitionOffset> assigned_scratch_;
  std::vector<TopicPartition> revoked_scratch_;
  std::atomic<uint64_t> consume_errors_{0};
  std::atomic<uint64_t> commit_failures_{0};
  std::atomic<uint64_t> rebalances_{0};
  std::atomic<int> last_consume_error_{RD_KAFKA_RESP_ERR_NO_ERROR};
  std::chrono::steady_clock::time_point last_error_logged_{};
  std::atomic<int> last_commit_error_{RD_KAFKA_RESP_ERR_NO_ERROR};
};

}  // namespace crmstream::kafka
