// Producer: an idempotent Kafka producer (enable.idempotence=true, acks=all)
// for the engine's output topics. Produce() copies key and value into
// librdkafka's queue (RD_KAFKA_MSG_F_COPY), so callers may reuse their
// buffers at once; when the queue is full it serves delivery reports and
// retries (bounded backpressure) instead of dropping the message.
//
// Delivery reports are counted (delivered, failed, last error) when the
// producing thread calls Poll() (or Produce/Flush, which poll internally).
//
// Transactions (exactly-once): with ProducerOptions::transactional_id set,
// InitTransactions once, then per checkpoint BeginTransaction, Produce...,
// SendOffsetsToTransaction (the input offsets, in the consumer group's name),
// CommitTransaction; read_committed consumers see all of a transaction or
// nothing of it. librdkafka's error classes map to Status codes:
//   Unavailable  retriable: call the same function again
//   Aborted      abortable: AbortTransaction, rewind the state to the last
//                checkpoint, and start a new transaction
//   Internal     fatal (e.g. fenced by a newer instance with the same
//                transactional.id): destroy the producer, restart from the
//                last checkpoint
//   InvalidArgument  misuse (e.g. Commit without Begin, or no transactional.id)
//
// Memory: librdkafka's local queue is capped by queue.buffering.max.kbytes
// (ProducerOptions::queue_max_kbytes) besides queue.buffering.max.messages;
// a full queue makes Produce wait (back-pressure), never grow.
//
// Thread-safety: Produce, Poll, Flush and the transaction calls are meant for
// ONE thread (the delivery callback runs on it). The counters may be read
// from any thread. Call Flush() before destroying the producer: destruction
// does not wait for outstanding messages.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/handles.h"

namespace crmstream::kafka {

// Lets librdkafka's partitioner choose (by key hash).
inline constexpr int32_t kPartitionUnassigned = RD_KAFKA_PARTITION_UA;

// Delivery tags use at most the low 62 bits: the message's delivery
// generation travels in the top two.
inline constexpr uint64_t kMaxProducerTag = (uint64_t{1} << 62) - 1;

struct ProducerOptions {
  // Delay before a batch is sent (linger.ms); small for low latency. Default 5.
  int linger_ms = 5;
  // enable.idempotence (implies acks=all). Default true.
  bool idempotent = true;
  // How long Produce() keeps serving delivery reports and retrying while the
  // local queue is full before it gives up with Unavailable. Default 60 s.
  std::chrono::milliseconds queue_full_timeout = std::chrono::seconds(60);
  // queue.buffering.max.kbytes: the local queue's memory cap. Default 65536
  // (64 MiB; librdkafka's own default is 1 GiB).
  int queue_max_kbytes = 65536;
  // queue.buffering.max.messages: the local queue's message count cap, which
  // bounds librdkafka's own ~190 bytes per message. Default 100000
  // (librdkafka's).
  int queue_max_messages = 100000;
  // transactional.id; empty (the default) for a non-transactional producer.
  // One id per engine instance and input assignment, stable across restarts,
  // so a restarted instance fences its crashed predecessor.
  std::string transactional_id = {};
  // transaction.timeout.ms: how long the broker keeps a transaction open
  // without a commit before aborting it. Default 60000.
  int transaction_timeout_ms = 60000;
};

struct MessageHeader {
  std::string_view name;
  std::string_view value;
};

class Producer {
 public:
  // Options are applied as defaults: any property in `config` wins.
  static Result<std::unique_ptr<Producer>> Create(const ClientConfig& config,
                                                  const ProducerOptions& options = {});
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Enqueues one message (key and value are copied). partition may be
  // kPartitionUnassigned. An empty key is sent as a null key. No allocation
  // on our side once the topic has been seen. A non-zero `tag` (at most
  // kMaxProducerTag) is handed to the delivery observer when the brokers
  // acknowledge the message.
  Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                 std::string_view value, uint64_t tag = 0);
  // Same with headers (these allocate: librdkafka's header list).
  Status Produce(std::string_view topic, int32_t partition, std::string_view key,
                 std::string_view value, std::span<const MessageHeader> headers, uint64_t tag = 0);

  // Called on the thread serving delivery reports for each acknowledged
  // message produced with a non-zero tag (e.g. to measure latency to the
  // broker's acknowledgement). `context` must outlive the producer's use.
  using DeliveryObserver = void (*)(void* context, uint64_t tag);
  void SetDeliveryObserver(DeliveryObserver observer, void* context) {
    observer_ = observer;
    observer_context_ = context;
  }

  // Serves delivery reports; returns how many events were served.
  int Poll(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Waits until every enqueued message is delivered or failed; Unavailable
  // naming the count still outstanding if the timeout expires.
  Status Flush(std::chrono::milliseconds timeout);

  // Messages enqueued and not yet reported.
  int OutstandingCount() const;

  // Delivery generations, to wait for the messages produced before a point
  // without waiting for those produced after it (Flush waits for all):
  // each message belongs to the generation open when it was produced.
  // CloseGeneration ends the open one and returns its number;
  // GenerationSettled(g) is true once every message of generation g and of
  // those before it is reported, delivered or failed. Conservative: with
  // more than three generations unsettled, a later one's messages may also
  // be waited for. Producer thread only.
  uint64_t CloseGeneration();
  bool GenerationSettled(uint64_t generation) const;
  uint64_t delivered_count() const { return delivered_.load(std::memory_order_relaxed); }
  uint64_t failed_count() const { return failed_.load(std::memory_order_relaxed); }
  // The last delivery error as a Status (OK if none so far).
  Status last_delivery_error() const;
  // The last delivery error's code, and the topic and size (key + value)
  // of its record (NO_ERROR, empty, 0 if none). The topic and size:
  // producer thread only.
  rd_kafka_resp_err_t last_delivery_error_code() const {
    return static_cast<rd_kafka_resp_err_t>(last_error_.load(std::memory_order_relaxed));
  }
  const std::string& last_failed_topic() const { return last_failed_topic_; }
  size_t last_failed_bytes() const { return last_failed_bytes_; }
  // A fatal error makes the producer unusable (idempotence guarantees lost);
  // OK while there is none.
  Status FatalError() const;

  // Transactions (see above); each Unavailable / Aborted / Internal /
  // InvalidArgument as described there.
  // Registers the transactional.id with the coordinator and fences (aborts)
  // any transaction a previous instance with the same id left open.
  Status InitTransactions(std::chrono::milliseconds timeout);
  Status BeginTransaction();
  // Adds the consumer group's next offsets to the open transaction: they are
  // committed if and only if the transaction is.
  Status SendOffsetsToTransaction(std::span<const TopicPartitionOffset> offsets,
                                  const Consumer& consumer, std::chrono::milliseconds timeout);
  // Flushes, then commits; on return every message of the transaction is
  // delivered and visible to read_committed consumers.
  Status CommitTransaction(std::chrono::milliseconds timeout);
  // Waits (at most half of `timeout`) for the transaction's first
  // acknowledgement before aborting: see the definition.
  Status AbortTransaction(std::chrono::milliseconds timeout);
  bool transactional() const { return !options_.transactional_id.empty(); }

  // Delivered-offset tracking (for changelog offsets): after TrackDeliveredOffsets(topic),
  // LastDeliveredOffset returns the highest offset acknowledged for the
  // partition so far (-1 if none). Producer thread only.
  void TrackDeliveredOffsets(std::string_view topic);
  int64_t LastDeliveredOffset(std::string_view topic, int32_t partition) const;

  // Makes `consumer`'s wait for records (Consumer::ConsumeBatch) return as
  // soon as a delivery report arrives here, so a loop that polls this
  // producer between batches serves the report at once, not after the
  // consumer's wait ends (its timeout, or the next fetch response). Reports
  // are what acknowledges an output: this is most of an output's latency
  // when input is sparse. Either client may be destroyed first; a closed
  // consumer is not woken. Call once, before producing.
  void WakeOnDelivery(const Consumer& consumer);

  rd_kafka_t* handle() const { return rk_.get(); }

 private:
  Producer() = default;
  Result<rd_kafka_topic_t*> Topic(std::string_view name);
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* message, void* opaque);
  // The opaque a message travels with: its tag and its generation's slot.
  uint64_t Pack(uint64_t tag) const {
    return (tag & kMaxProducerTag) | (generation_ % kGenerationSlots) << kGenerationShift;
  }
  void Produced() { ++unsettled_[generation_ % kGenerationSlots]; }

  struct CachedTopic {
    std::string name;
    TopicHandle handle;
  };

  KafkaHandle rk_;
  // WakeOnDelivery: the consumer's wait a delivery report cuts short, and
  // this producer's report queue, whose first report calls it.
  std::shared_ptr<ConsumerWake> wake_;
  QueueHandle report_queue_;
  ProducerOptions options_;
  // Output topics are few; a linear scan beats hashing and never allocates.
  std::vector<CachedTopic> topics_;
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> failed_{0};
  // delivered_count() and failed_count() when the open transaction began.
  uint64_t delivered_at_begin_ = 0;
  uint64_t failed_at_begin_ = 0;
  std::atomic<int> last_error_{RD_KAFKA_RESP_ERR_NO_ERROR};
  // Unreported messages by generation, modulo the ring's size.
  static constexpr int kGenerationShift = 62;
  static constexpr size_t kGenerationSlots = 4;
  uint64_t generation_ = 0;
  std::array<uint64_t, kGenerationSlots> unsettled_{};
  std::string last_failed_topic_;
  size_t last_failed_bytes_ = 0;
  DeliveryObserver observer_ = nullptr;
  void* observer_context_ = nullptr;
  struct TrackedTopic {
    std::string name;
    std::vector<int64_t> last_offset;  // by partition
  };
  std::vector<TrackedTopic> tracked_;
};

// The Status of a transaction call's rd_kafka_error_t (nullptr is OK), by
// librdkafka's error class as listed above. Does not take ownership.
Status TransactionStatus(const rd_kafka_error_t* error, std::string_view operation);

}  // namespace crmstream::kafka
