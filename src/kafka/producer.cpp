#include "crmstream/kafka/producer.h"

#include <algorithm>
#include <array>

#include "crmstream/kafka/kafka_error.h"

namespace crmstream::kafka {
namespace {

using Clock = std::chrono::steady_clock;

// How long one back-pressure wait serves delivery reports before retrying.
constexpr int kQueueFullPollMs = 10;

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Create(const ClientConfig& config,
                                                   const ProducerOptions& options) {
  ClientConfig effective = config;
  effective.SetDefault("client.id", "crmstream-producer");
  effective.SetDefault("linger.ms", std::to_string(options.linger_ms));
  effective.SetDefault("queue.buffering.max.kbytes", std::to_string(options.queue_max_kbytes));
  effective.SetDefault("queue.buffering.max.messages", std::to_string(options.queue_max_messages));
  if (!options.transactional_id.empty()) {
    // Transactions imply idempotence (librdkafka enables it).
    effective.SetDefault("transactional.id", options.transactional_id);
    effective.SetDefault("transaction.timeout.ms", std::to_string(options.transaction_timeout_ms));
  }
  if (options.idempotent || !options.transactional_id.empty()) {
    effective.SetDefault("enable.idempotence", "true");
    effective.SetDefault("acks", "all");
  }
  CRM_ASSIGN_OR_RETURN(ConfHandle conf, effective.BuildConf());
  RouteLogsToSpdlog(conf.get());

  std::unique_ptr<Producer> producer(new Producer());
  producer->options_ = options;
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Producer::OnDelivery);
  rd_kafka_conf_set_opaque(conf.get(), producer.get());

  std::array<char, 512> errstr{};
  producer->rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  if (!producer->rk_) return Status::InvalidArgument(std::string("producer: ") + errstr.data());
  conf.release();  // owned by the client now
  return producer;
}

// Tags travel as librdkafka's per-message opaque pointer.
static_assert(sizeof(void*) >= sizeof(uint64_t), "a 64-bit tag must fit a pointer");

Producer::~Producer() {
  // No report may reach the consumer's queue once its reference is gone.
  if (report_queue_) rd_kafka_queue_cb_event_enable(report_queue_.get(), nullptr, nullptr);
  report_queue_.reset();
  wake_.reset();
  // Topic handles must go before the client.
  topics_.clear();
  rk_.reset();
}

void Producer::WakeOnDelivery(const Consumer& consumer) {
  wake_ = consumer.wake();
  if (!wake_) return;
  report_queue_.reset(rd_kafka_queue_get_main(rk_.get()));
  // Called on a librdkafka thread of this producer when its empty report
  // queue gets a report; yielding the other client's queue is allowed there.
  rd_kafka_queue_cb_event_enable(
      report_queue_.get(),
      [](rd_kafka_t*, void* wake) { static_cast<ConsumerWake*>(wake)->Yield(); }, wake_.get());
}

void Producer::OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* message, void* opaque) {
  auto* self = static_cast<Producer*>(opaque);
  const uint64_t packed = reinterpret_cast<uintptr_t>(message->_private);
  uint64_t& unsettled = self->unsettled_[packed >> kGenerationShift];
  if (unsettled > 0) --unsettled;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->delivered_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t tag = packed & kMaxProducerTag;
    if (self->observer_ != nullptr && tag != 0) self->observer_(self->observer_context_, tag);
    if (!self->tracked_.empty() && message->partition >= 0) {
      const std::string_view topic = rd_kafka_topic_name(message->rkt);
      for (TrackedTopic& tracked : self->tracked_) {
        if (tracked.name != topic) continue;
        const auto p = static_cast<size_t>(message->partition);
        if (tracked.last_offset.size() <= p) tracked.last_offset.resize(p + 1, -1);
        tracked.last_offset[p] = std::max(tracked.last_offset[p], message->offset);
        break;
      }
    }
  } else {
    self->failed_.fetch_add(1, std::memory_order_relaxed);
    self->last_error_.store(message->err, std::memory_order_relaxed);
    // Failures are rare and end the run: their bookkeeping may allocate.
    if (message->rkt != nullptr) self->last_failed_topic_ = rd_kafka_topic_name(message->rkt);
    self->last_failed_bytes_ = message->len + message->key_len;
  }
}

uint64_t Producer::CloseGeneration() { return generation_++; }

bool Producer::GenerationSettled(uint64_t generation) const {
  // The ring holds the last kGenerationSlots generations; older ones share
  // slots with newer ones, whose counts then keep them unsettled too.
  const uint64_t oldest =
      generation_ >= kGenerationSlots - 1 ? generation_ - (kGenerationSlots - 1) : 0;
  if (generation < oldest) {
    return std::all_of(unsettled_.begin(), unsettled_.end(), [](uint64_t n) { return n == 0; });
  }
  for (uint64_t g = oldest; g <= std::min(generation, generation_); ++g) {
    if (unsettled_[g % kGenerationSlots] != 0) return false;
  }
  return true;
}

Result<rd_kafka_topic_t*> Producer::Topic(std::string_view name) {
  for (const CachedTopic& cached : topics_) {
    if (cached.name == name) return cached.handle.get();
  }
  std::string owned_name(name);
  TopicHandle handle(rd_kafka_topic_new(rk_.get(), owned_name.c_str(), nullptr));
  if (!handle) return KafkaStatus(rd_kafka_last_error(), "producer: topic '" + owned_name + "'");
  rd_kafka_topic_t* raw = handle.get();
  topics_.push_back({std::move(owned_name), std::move(handle)});
  return raw;
}

Status Producer::Produce(std::string_view topic, int32_t partition, std::string_view key,
                         std::string_view value, uint64_t tag) {
  CRM_ASSIGN_OR_RETURN(rd_kafka_topic_t * rkt, Topic(topic));
  Clock::time_point give_up_at{};
  while (true) {
    // librdkafka's API takes non-const pointers; with MSG_F_COPY it only reads.
    const int rc =
        rd_kafka_produce(rkt, partition, RD_KAFKA_MSG_F_COPY, const_cast<char*>(value.data()),
                         value.size(), key.empty() ? nullptr : key.data(), key.size(),
                         reinterpret_cast<void*>(static_cast<uintptr_t>(Pack(tag))));
    if (rc == 0) {
      Produced();
      return Status::OK();
    }
    const rd_kafka_resp_err_t err = rd_kafka_last_error();
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return KafkaStatus(err, "producer: produce to '" + std::string(topic) + "'");
    }
    // Back-pressure: serve delivery reports so the queue drains, then retry.
    const Clock::time_point now = Clock::now();
    if (give_up_at == Clock::time_point{}) {
      give_up_at = now + options_.queue_full_timeout;
    } else if (now >= give_up_at) {
      return KafkaStatus(err, "producer: produce to '" + std::string(topic) +
                                  "' (queue still full after " +
                                  std::to_string(options_.queue_full_timeout.count()) + " ms)");
    }
    rd_kafka_poll(rk_.get(), kQueueFullPollMs);
  }
}

Status Producer::Produce(std::string_view topic, int32_t partition, std::string_view key,
                         std::string_view value, std::span<const MessageHeader> headers,
                         uint64_t tag) {
  if (headers.empty()) return Produce(topic, partition, key, value, tag);
  // The cached handle, not the name: by name, librdkafka looks the topic up
  // (under its lock) for every record, and the name needed a copy to end
  // in a NUL (changelog records have headers: one such call per record).
  CRM_ASSIGN_OR_RETURN(rd_kafka_topic_t * rkt, Topic(topic));
  Clock::time_point give_up_at{};
  while (true) {
    HeadersHandle hdrs(rd_kafka_headers_new(headers.size()));
    for (const MessageHeader& header : headers) {
      rd_kafka_header_add(hdrs.get(), header.name.data(), static_cast<ssize_t>(header.name.size()),
                          header.value.data(), static_cast<ssize_t>(header.value.size()));
    }
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
        RD_KAFKA_V_HEADERS(hdrs.get()),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(Pack(tag)))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      hdrs.release();  // the message owns the headers now
      Produced();
      return Status::OK();
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return KafkaStatus(err, "producer: produce to '" + std::string(topic) + "'");
    }
    const Clock::time_point now = Clock::now();
    if (give_up_at == Clock::time_point{}) {
      give_up_at = now + options_.queue_full_timeout;
    } else if (now >= give_up_at) {
      return KafkaStatus(err,
                         "producer: produce to '" + std::string(topic) + "' (queue still full)");
    }
    rd_kafka_poll(rk_.get(), kQueueFullPollMs);
  }
}

int Producer::Poll(std::chrono::milliseconds timeout) {
  return rd_kafka_poll(rk_.get(), static_cast<int>(timeout.count()));
}

Status Producer::Flush(std::chrono::milliseconds timeout) {
  const rd_kafka_resp_err_t err = rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count()));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();
  return KafkaStatus(
      err, "producer: flush (" + std::to_string(OutstandingCount()) + " messages outstanding)");
}

int Producer::OutstandingCount() const { return rd_kafka_outq_len(rk_.get()); }

Status Producer::last_delivery_error() const {
  const auto err = static_cast<rd_kafka_resp_err_t>(last_error_.load(std::memory_order_relaxed));
  return KafkaStatus(err, "producer: delivery");
}

Status Producer::FatalError() const {
  std::array<char, 512> errstr{};
  const rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk_.get(), errstr.data(), errstr.size());
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();
  return Status::Internal(std::string("producer: fatal error: ") + errstr.data() + " (" +
                          rd_kafka_err2name(err) + ")");
}

void Producer::TrackDeliveredOffsets(std::string_view topic) {
  for (const TrackedTopic& tracked : tracked_) {
    if (tracked.name == topic) return;
  }
  tracked_.push_back({std::string(topic), {}});
}

int64_t Producer::LastDeliveredOffset(std::string_view topic, int32_t partition) const {
  for (const TrackedTopic& tracked : tracked_) {
    if (tracked.name != topic) continue;
    const auto p = static_cast<size_t>(partition);
    return partition >= 0 && p < tracked.last_offset.size() ? tracked.last_offset[p] : -1;
  }
  return -1;
}

Status TransactionStatus(const rd_kafka_error_t* error, std::string_view operation) {
  if (error == nullptr) return Status::OK();
  const rd_kafka_resp_err_t err = rd_kafka_error_code(error);
  StatusCode code;
  std::string_view what;
  if (rd_kafka_error_is_fatal(error)) {
    code = StatusCode::kInternal;
    what = "fatal, recreate the producer";
  } else if (rd_kafka_error_txn_requires_abort(error)) {
    code = StatusCode::kAborted;
    what = "abort the transaction and retry from the last checkpoint";
  } else if (rd_kafka_error_is_retriable(error)) {
    code = StatusCode::kUnavailable;
    what = "retriable";
  } else if (err == RD_KAFKA_RESP_ERR__STATE || err == RD_KAFKA_RESP_ERR__NOT_CONFIGURED) {
    code = StatusCode::kInvalidArgument;
    what = "not allowed in the transaction's current state";
  } else {
    code = KafkaErrorCode(err);
    what = "error";
  }
  std::string message(operation);
  message.append(": ").append(rd_kafka_error_string(error));
  message.append(" (").append(rd_kafka_error_name(error)).append("; ").append(what).append(")");
  return Status(code, std::move(message));
}

namespace {

// Takes ownership of a transaction call's error object.
Status TakeTransactionError(rd_kafka_error_t* error, std::string_view operation) {
  const ErrorHandle owned(error);
  return TransactionStatus(owned.get(), operation);
}

}  // namespace

Status Producer::InitTransactions(std::chrono::milliseconds timeout) {
  if (!transactional()) {
    return Status::InvalidArgument("producer: init transactions: no transactional.id configured");
  }
  return TakeTransactionError(
      rd_kafka_init_transactions(rk_.get(), static_cast<int>(timeout.count())),
      "producer: init transactions");
}

Status Producer::BeginTransaction() {
  delivered_at_begin_ = delivered_count();
  failed_at_begin_ = failed_count();
  return TakeTransactionError(rd_kafka_begin_transaction(rk_.get()), "producer: begin transaction");
}

Status Producer::SendOffsetsToTransaction(std::span<const TopicPartitionOffset> offsets,
                                          const Consumer& consumer,
                                          std::chrono::milliseconds timeout) {
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const TopicPartitionOffset& entry : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), entry.topic.c_str(), entry.partition)->offset =
        entry.offset;
  }
  rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer.handle());
  if (group == nullptr) {
    return Status::InvalidArgument(
        "producer: send offsets to transaction: the consumer has no group");
  }
  rd_kafka_error_t* error = rd_kafka_send_offsets_to_transaction(rk_.get(), list.get(), group,
                                                                 static_cast<int>(timeout.count()));
  rd_kafka_consumer_group_metadata_destroy(group);
  return TakeTransactionError(error, "producer: send offsets to transaction");
}

Status Producer::CommitTransaction(std::chrono::milliseconds timeout) {
  Status st = TakeTransactionError(
      rd_kafka_commit_transaction(rk_.get(), static_cast<int>(timeout.count())),
      "producer: commit transaction");
  // Serve the delivery reports of the committed messages (counters, offsets).
  rd_kafka_poll(rk_.get(), 0);
  return st;
}

Status Producer::AbortTransaction(std::chrono::milliseconds timeout) {
  // librdkafka (2.0 to 2.6 at least, its issue #4849) sends the abort's
  // EndTxn as soon as the transaction's first AddPartitionsToTxn is sent,
  // not answered: an abort that overtakes it reaches a coordinator with no
  // transaction, which refuses it as INVALID_TXN_STATE, a fatal error. A
  // message is acknowledged only once its partition is registered, so one
  // acknowledgement in this transaction shows the coordinator has it. The
  // registration may wait on the coordinator finishing the previous
  // transaction (CONCURRENT_TRANSACTIONS, retried): half the timeout is
  // given to it. A failed delivery ends the wait: the transaction is broken
  // and nothing more will be acknowledged.
  const auto deadline = std::chrono::steady_clock::now() + timeout / 2;
  while (delivered_count() == delivered_at_begin_ && failed_count() == failed_at_begin_ &&
         OutstandingCount() > 0 && std::chrono::steady_clock::now() < deadline) {
    Poll(std::chrono::milliseconds(5));
  }
  Status st =
      TakeTransactionError(rd_kafka_abort_transaction(rk_.get(), static_cast<int>(timeout.count())),
                           "producer: abort transaction");
  rd_kafka_poll(rk_.get(), 0);
  return st;
}

}  // namespace crmstream::kafka
