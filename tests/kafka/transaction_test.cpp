#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using crmstream::testing::TestBroker;
using testing::EmbeddedBroker;
using testing::kTestDeadline;
using testing::RealBroker;
using testing::Received;

// librdkafka 2.0.2's mock cluster accepts every transaction request but
// implements none of the broker side of transactions: EndTxn writes no
// commit/abort markers and keeps no aborted-transaction index (a
// read_committed consumer sees aborted records), InitProducerId does not
// fence an older producer with the same transactional.id, and
// TxnOffsetCommit does not store the offsets. Each test runs against both
// brokers: the client side on both, the broker-side guarantees on the real
// one (scripts/kafka.sh); on the mock, a test whose claim only a real broker
// can show pins the mock's behaviour and then reports SKIPPED.
constexpr const char* kMockLimitation =
    "librdkafka 2.0.2's mock cluster does not implement transaction markers, fencing or "
    "TxnOffsetCommit: this is checked against a real broker (scripts/kafka.sh)";

std::unique_ptr<Producer> MakeTransactional(const TestBroker& fx, const std::string& id) {
  ProducerOptions options;
  options.transactional_id = id;
  auto producer = Producer::Create(fx.config(), options);
  REQUIRE_OK(producer);
  REQUIRE_OK((*producer)->InitTransactions(kTestDeadline));
  return std::move(producer).value();
}

void ProduceValues(Producer& producer, const std::string& topic, const std::string& tag,
                   int count) {
  for (int i = 0; i < count; ++i) {
    const std::string value = tag + "-" + std::to_string(i);
    REQUIRE_OK(producer.Produce(topic, i % 2, "k" + std::to_string(i), value));
  }
}

// Reads everything a fresh consumer of `isolation` sees, until `want`
// messages arrived or nothing more came for a while.
std::vector<Received> ReadAll(const TestBroker& fx, const std::string& topic,
                              const std::string& isolation, size_t want) {
  ClientConfig config = fx.consumer_config();
  config.Set("isolation.level", isolation);
  auto consumer = Consumer::Create(config, fx.Name("reader-" + isolation));
  REQUIRE_OK(consumer);
  const std::vector<TopicPartitionOffset> assignment{{topic, 0, kOffsetBeginning},
                                                     {topic, 1, kOffsetBeginning}};
  REQUIRE_OK((*consumer)->Assign(assignment));
  std::vector<Received> received = testing::ConsumeUntil(**consumer, want, std::chrono::seconds(8));
  // Anything beyond `want` (there should be none) arrives within this grace.
  MessageBatch batch(256);
  for (int i = 0; i < 10; ++i) {
    auto n = (*consumer)->ConsumeBatch(100, &batch);
    REQUIRE_OK(n);
    testing::AppendBatch(batch, &received);
  }
  batch.Clear();
  REQUIRE_OK((*consumer)->Close());
  return received;
}

// Aborts as the producer's contract says: a retriable error (Unavailable,
// e.g. a purged in-flight message whose report came late) asks for the same
// call again.
Status Abort(Producer* producer) {
  Status st = producer->AbortTransaction(kTestDeadline);
  for (int retry = 0; retry < 3 && st.code() == StatusCode::kUnavailable; ++retry) {
    st = producer->AbortTransaction(kTestDeadline);
  }
  return st;
}

std::multiset<std::string> Values(const std::vector<Received>& received) {
  std::multiset<std::string> out;
  for (const Received& m : received) out.insert(m.value);
  return out;
}

TEMPLATE_TEST_CASE("A read_committed consumer sees committed transactions, never aborted ones",
                   "[kafka][integration][transactions]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("txn-out", 2);
  auto producer = MakeTransactional(fx, fx.Name("txn-test-1"));

  REQUIRE_OK(producer->BeginTransaction());
  ProduceValues(*producer, topic, "first", 50);
  REQUIRE_OK(producer->CommitTransaction(kTestDeadline));

  REQUIRE_OK(producer->BeginTransaction());
  ProduceValues(*producer, topic, "aborted", 30);
  REQUIRE(producer->Flush(kTestDeadline).ok());  // on the broker, then aborted
  REQUIRE_OK(Abort(producer.get()));

  REQUIRE_OK(producer->BeginTransaction());
  ProduceValues(*producer, topic, "third", 20);
  REQUIRE_OK(producer->CommitTransaction(kTestDeadline));

  // The reference: what was committed, written out independently.
  std::multiset<std::string> expected;
  for (int i = 0; i < 50; ++i) expected.insert("first-" + std::to_string(i));
  for (int i = 0; i < 20; ++i) expected.insert("third-" + std::to_string(i));

  const auto committed = ReadAll(fx, topic, "read_committed", expected.size());
  std::multiset<std::string> seen = Values(committed);
  // Every committed record, once (on any broker).
  for (const std::string& value : expected) CHECK(seen.count(value) == 1);
  if (fx.real()) {
    CHECK(seen == expected);  // and nothing of the aborted transaction
    // The aborted records did reach the log: a read_uncommitted reader sees
    // them, so the check above is not passing by accident.
    const auto uncommitted = ReadAll(fx, topic, "read_uncommitted", expected.size() + 30);
    CHECK(uncommitted.size() == expected.size() + 30);
  } else {
    // The mock shows the aborted records too (no markers): pinned here so a
    // librdkafka upgrade that fixes it is noticed.
    CHECK(seen.size() == expected.size() + 30);
    CRMSTREAM_SKIP(kMockLimitation);
  }
}

TEMPLATE_TEST_CASE("An open transaction holds read_committed readers back until it commits",
                   "[kafka][integration][transactions]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("txn-open", 1);
  auto producer = MakeTransactional(fx, fx.Name("txn-open"));

  ClientConfig config = fx.consumer_config();
  config.Set("isolation.level", "read_committed");
  auto committed_reader = Consumer::Create(config, fx.Name("open-committed"));
  REQUIRE_OK(committed_reader);
  config.Set("isolation.level", "read_uncommitted");
  auto uncommitted_reader = Consumer::Create(config, fx.Name("open-uncommitted"));
  REQUIRE_OK(uncommitted_reader);
  const std::vector<TopicPartitionOffset> assignment{{topic, 0, kOffsetBeginning}};
  REQUIRE_OK((*committed_reader)->Assign(assignment));
  REQUIRE_OK((*uncommitted_reader)->Assign(assignment));

  REQUIRE_OK(producer->BeginTransaction());
  for (int i = 0; i < 25; ++i) REQUIRE_OK(producer->Produce(topic, 0, "k", std::to_string(i)));
  REQUIRE(producer->Flush(kTestDeadline).ok());  // in the log, not yet committed

  // The records are in the log: the read_uncommitted reader gets all 25.
  CHECK(testing::ConsumeUntil(**uncommitted_reader, 25).size() == 25);
  // The read_committed reader stops at the last stable offset, before them.
  const auto while_open = testing::ConsumeUntil(**committed_reader, 25, std::chrono::seconds(3));

  REQUIRE_OK(producer->CommitTransaction(kTestDeadline));
  const auto after_commit = testing::ConsumeUntil(**committed_reader, 25 - while_open.size());
  CHECK(while_open.size() + after_commit.size() == 25);
  REQUIRE_OK((*committed_reader)->Close());
  REQUIRE_OK((*uncommitted_reader)->Close());
  if (!fx.real()) {
    // The mock has no last stable offset: the open transaction shows.
    CHECK(while_open.size() == 25);
    CRMSTREAM_SKIP(kMockLimitation);
  }
  CHECK(while_open.empty());
  CHECK(after_commit.size() == 25);
}

TEMPLATE_TEST_CASE("Transaction calls report misuse and a fenced producer as errors of their class",
                   "[kafka][integration][transactions]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("txn-misuse", 2);

  // No transactional.id: InvalidArgument, the idempotent path is unchanged.
  auto plain = Producer::Create(fx.config());
  REQUIRE_OK(plain);
  CHECK((*plain)->InitTransactions(kTestDeadline).code() == StatusCode::kInvalidArgument);
  CHECK((*plain)->BeginTransaction().code() == StatusCode::kInvalidArgument);
  CHECK_OK((*plain)->Produce(topic, 0, "k", "v"));
  CHECK_OK((*plain)->Flush(kTestDeadline));
  CHECK((*plain)->delivered_count() == 1);

  auto producer = MakeTransactional(fx, fx.Name("txn-test-2"));
  // Commit without Begin: a state error.
  CHECK(producer->CommitTransaction(kTestDeadline).code() == StatusCode::kInvalidArgument);

  // A second instance with the same transactional.id fences the first: the
  // first one's next transaction call fails fatally.
  REQUIRE_OK(producer->BeginTransaction());
  REQUIRE_OK(producer->Produce(topic, 0, "k", "from-the-zombie"));
  REQUIRE_OK(producer->Flush(kTestDeadline));
  auto successor = MakeTransactional(fx, fx.Name("txn-test-2"));
  const Status zombie = producer->CommitTransaction(kTestDeadline);
  INFO(zombie.ToString());
  REQUIRE_OK(successor->BeginTransaction());
  REQUIRE_OK(successor->Produce(topic, 1, "k", "from-the-successor"));
  REQUIRE_OK(successor->CommitTransaction(kTestDeadline));
  if (!fx.real()) {
    CHECK(zombie.ok());  // the mock does not fence
    CRMSTREAM_SKIP(kMockLimitation);
  }
  // Fenced is fatal: this producer can never write again.
  CHECK(zombie.code() == StatusCode::kInternal);
  CHECK_THAT(zombie.message(), Catch::Contains("fenced"));
  CHECK(producer->FatalError().code() == StatusCode::kInternal);
  CHECK_FALSE(producer->BeginTransaction().ok());
  // The zombie's open transaction was aborted when the successor registered
  // the same transactional.id: read_committed sees the successor's record
  // and the plain producer's, never the zombie's.
  const auto committed = ReadAll(fx, topic, "read_committed", 2);
  CHECK(Values(committed) == std::multiset<std::string>{"from-the-successor", "v"});
}

TEMPLATE_TEST_CASE("Offsets sent to a transaction are committed with it, and only then",
                   "[kafka][integration][transactions]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string input = fx.CreateTopic("txn-in", 1);
  const std::string output = fx.CreateTopic("txn-out2", 2);

  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("txn-group"));
  REQUIRE_OK(consumer);
  const std::vector<TopicPartitionOffset> assignment{{input, 0, kOffsetBeginning}};
  REQUIRE_OK((*consumer)->Assign(assignment));

  auto producer = MakeTransactional(fx, fx.Name("txn-test-3"));
  const std::vector<TopicPartition> partitions{{input, 0}};

  // Aborted: the offset is not committed.
  REQUIRE_OK(producer->BeginTransaction());
  REQUIRE_OK(producer->Produce(output, 0, "k", "v1"));
  const std::vector<TopicPartitionOffset> first{{input, 0, 17}};
  REQUIRE_OK(producer->SendOffsetsToTransaction(first, **consumer, kTestDeadline));
  REQUIRE_OK(Abort(producer.get()));
  auto after_abort = (*consumer)->Committed(partitions, kTestDeadline);
  REQUIRE_OK(after_abort);
  CHECK((*after_abort)[0].offset < 0);

  // Committed: it is.
  REQUIRE_OK(producer->BeginTransaction());
  REQUIRE_OK(producer->Produce(output, 0, "k", "v2"));
  const std::vector<TopicPartitionOffset> second{{input, 0, 42}};
  REQUIRE_OK(producer->SendOffsetsToTransaction(second, **consumer, kTestDeadline));
  REQUIRE_OK(producer->CommitTransaction(kTestDeadline));
  auto after_commit = (*consumer)->Committed(partitions, kTestDeadline);
  REQUIRE_OK(after_commit);
  REQUIRE_OK((*consumer)->Close());
  if (!fx.real()) CRMSTREAM_SKIP(kMockLimitation);  // the commit was not checked
  CHECK((*after_commit)[0].offset == 42);
}

TEMPLATE_TEST_CASE("Delivered offsets are tracked per partition for changelog checkpoints",
                   "[kafka][integration][transactions]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("tracked", 2);
  auto producer = MakeTransactional(fx, fx.Name("txn-test-4"));
  producer->TrackDeliveredOffsets(topic);
  CHECK(producer->LastDeliveredOffset(topic, 0) == -1);
  REQUIRE_OK(producer->BeginTransaction());
  for (int i = 0; i < 7; ++i) REQUIRE_OK(producer->Produce(topic, 0, "k", "v"));
  for (int i = 0; i < 3; ++i) REQUIRE_OK(producer->Produce(topic, 1, "k", "v"));
  REQUIRE_OK(producer->CommitTransaction(kTestDeadline));
  // Offsets 0..6 and 0..2 on a fresh topic.
  CHECK(producer->LastDeliveredOffset(topic, 0) == 6);
  CHECK(producer->LastDeliveredOffset(topic, 1) == 2);
  CHECK(producer->LastDeliveredOffset("other", 0) == -1);
}

}  // namespace
}  // namespace crmstream::kafka
