#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "kafka/kafka_test_support.h"
#include "support/test_support.h"

namespace crmstream::kafka {
namespace {

using testing::kTestDeadline;
using testing::Received;

// librdkafka 2.0.2's mock cluster accepts every transaction request but
// implements none of the broker side of transactions: EndTxn writes no
// commit/abort markers and keeps no aborted-transaction index (a
// read_committed consumer sees aborted records), InitProducerId does not
// fence an older producer with the same transactional.id, and
// TxnOffsetCommit does not store the offsets. These tests therefore check
// the client side on the mock, and the broker-side guarantees against a real
// broker when CRMSTREAM_TEST_KAFKA=host:port names one (topics are created
// there with TopicAdmin). Without one, a test whose claim only a real broker
// can show reports SKIPPED after its client-side checks.
struct BrokerUnderTest {
  BrokerUnderTest() {
    const char* real = std::getenv("CRMSTREAM_TEST_KAFKA");
    if (real != nullptr && *real != '\0') {
      bootstrap = real;
      suffix = "-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    } else {
      mock.emplace();
      bootstrap = mock->cluster->bootstrap_servers();
    }
  }
  bool real() const { return !mock.has_value(); }
  ClientConfig config() const {
    ClientConfig config;
    config.Set("bootstrap.servers", bootstrap);
    return config;
  }
  ClientConfig consumer_config() const {
    ClientConfig config = this->config();
    config.Set("session.timeout.ms", "6000");
    config.Set("heartbeat.interval.ms", "1000");
    return config;
  }
  // A topic name unique to this run on a real broker.
  std::string Topic(const std::string& base, int partitions) {
    const std::string name = base + suffix;
    auto admin = TopicAdmin::Create(config(), mock ? mock->cluster.get() : nullptr);
    REQUIRE(admin.ok());
    const std::vector<TopicSpec> specs{{name, partitions, real() ? -1 : 3}};
    REQUIRE((*admin)->EnsureTopics(specs).ok());
    return name;
  }
  std::string Id(const std::string& base) const { return base + suffix; }

  std::optional<testing::ClusterFixture> mock;
  std::string bootstrap;
  std::string suffix;
};

constexpr const char* kMockLimitation =
    "librdkafka 2.0.2's mock cluster does not implement transaction markers, fencing or "
    "TxnOffsetCommit; set CRMSTREAM_TEST_KAFKA=host:port to check this against a real broker";

std::unique_ptr<Producer> MakeTransactional(const BrokerUnderTest& fx, const std::string& id) {
  ProducerOptions options;
  options.transactional_id = id;
  auto producer = Producer::Create(fx.config(), options);
  REQUIRE(producer.ok());
  REQUIRE((*producer)->InitTransactions(kTestDeadline).ok());
  return std::move(producer).value();
}

void ProduceValues(Producer& producer, const std::string& topic, const std::string& tag,
                   int count) {
  for (int i = 0; i < count; ++i) {
    const std::string value = tag + "-" + std::to_string(i);
    REQUIRE(producer.Produce(topic, i % 2, "k" + std::to_string(i), value).ok());
  }
}

// Reads everything a fresh consumer of `isolation` sees, until `want`
// messages arrived or nothing more came for a while.
std::vector<Received> ReadAll(const BrokerUnderTest& fx, const std::string& topic,
                              const std::string& isolation, size_t want) {
  ClientConfig config = fx.consumer_config();
  config.Set("isolation.level", isolation);
  auto consumer = Consumer::Create(config, "reader-" + isolation);
  REQUIRE(consumer.ok());
  const std::vector<TopicPartitionOffset> assignment{{topic, 0, kOffsetBeginning},
                                                     {topic, 1, kOffsetBeginning}};
  REQUIRE((*consumer)->Assign(assignment).ok());
  std::vector<Received> received = testing::ConsumeUntil(**consumer, want, std::chrono::seconds(8));
  // Anything beyond `want` (there should be none) arrives within this grace.
  MessageBatch batch(256);
  for (int i = 0; i < 10; ++i) {
    auto n = (*consumer)->ConsumeBatch(100, &batch);
    REQUIRE(n.ok());
    testing::AppendBatch(batch, &received);
  }
  batch.Clear();
  REQUIRE((*consumer)->Close().ok());
  return received;
}

std::multiset<std::string> Values(const std::vector<Received>& received) {
  std::multiset<std::string> out;
  for (const Received& m : received) out.insert(m.value);
  return out;
}

TEST_CASE("A read_committed consumer sees committed transactions, never aborted ones",
          "[kafka][integration][transactions]") {
  BrokerUnderTest fx;
  const std::string topic = fx.Topic("txn-out", 2);
  auto producer = MakeTransactional(fx, fx.Id("txn-test-1"));

  REQUIRE(producer->BeginTransaction().ok());
  ProduceValues(*producer, topic, "first", 50);
  REQUIRE(producer->CommitTransaction(kTestDeadline).ok());

  REQUIRE(producer->BeginTransaction().ok());
  ProduceValues(*producer, topic, "aborted", 30);
  REQUIRE(producer->Flush(kTestDeadline).ok());  // on the broker, then aborted
  REQUIRE(producer->AbortTransaction(kTestDeadline).ok());

  REQUIRE(producer->BeginTransaction().ok());
  ProduceValues(*producer, topic, "third", 20);
  REQUIRE(producer->CommitTransaction(kTestDeadline).ok());

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

TEST_CASE("Transaction calls report misuse and a fenced producer as errors of their class",
          "[kafka][integration][transactions]") {
  BrokerUnderTest fx;
  const std::string topic = fx.Topic("txn-misuse", 2);

  // No transactional.id: InvalidArgument, the idempotent path is unchanged.
  auto plain = Producer::Create(fx.config());
  REQUIRE(plain.ok());
  CHECK((*plain)->InitTransactions(kTestDeadline).code() == StatusCode::kInvalidArgument);
  CHECK((*plain)->BeginTransaction().code() == StatusCode::kInvalidArgument);
  CHECK((*plain)->Produce(topic, 0, "k", "v").ok());
  CHECK((*plain)->Flush(kTestDeadline).ok());
  CHECK((*plain)->delivered_count() == 1);

  auto producer = MakeTransactional(fx, fx.Id("txn-test-2"));
  // Commit without Begin: a state error.
  CHECK(producer->CommitTransaction(kTestDeadline).code() == StatusCode::kInvalidArgument);

  // A second instance with the same transactional.id fences the first: the
  // first one's next transaction call fails fatally.
  REQUIRE(producer->BeginTransaction().ok());
  REQUIRE(producer->Produce(topic, 0, "k", "from-the-zombie").ok());
  REQUIRE(producer->Flush(kTestDeadline).ok());
  auto successor = MakeTransactional(fx, fx.Id("txn-test-2"));
  const Status zombie = producer->CommitTransaction(kTestDeadline);
  INFO(zombie.ToString());
  if (fx.real()) {
    CHECK_FALSE(zombie.ok());
    CHECK((zombie.code() == StatusCode::kInternal || zombie.code() == StatusCode::kAborted));
  }
  REQUIRE(successor->BeginTransaction().ok());
  REQUIRE(successor->Produce(topic, 1, "k", "from-the-successor").ok());
  REQUIRE(successor->CommitTransaction(kTestDeadline).ok());
  if (!fx.real()) CRMSTREAM_SKIP(kMockLimitation);  // the fencing was not checked
}

TEST_CASE("Offsets sent to a transaction are committed with it, and only then",
          "[kafka][integration][transactions]") {
  BrokerUnderTest fx;
  const std::string input = fx.Topic("txn-in", 1);
  const std::string output = fx.Topic("txn-out2", 2);

  auto consumer = Consumer::Create(fx.consumer_config(), fx.Id("txn-group"));
  REQUIRE(consumer.ok());
  const std::vector<TopicPartitionOffset> assignment{{input, 0, kOffsetBeginning}};
  REQUIRE((*consumer)->Assign(assignment).ok());

  auto producer = MakeTransactional(fx, fx.Id("txn-test-3"));
  const std::vector<TopicPartition> partitions{{input, 0}};

  // Aborted: the offset is not committed.
  REQUIRE(producer->BeginTransaction().ok());
  REQUIRE(producer->Produce(output, 0, "k", "v1").ok());
  const std::vector<TopicPartitionOffset> first{{input, 0, 17}};
  REQUIRE(producer->SendOffsetsToTransaction(first, **consumer, kTestDeadline).ok());
  REQUIRE(producer->AbortTransaction(kTestDeadline).ok());
  auto after_abort = (*consumer)->Committed(partitions, kTestDeadline);
  REQUIRE(after_abort.ok());
  CHECK((*after_abort)[0].offset < 0);

  // Committed: it is.
  REQUIRE(producer->BeginTransaction().ok());
  REQUIRE(producer->Produce(output, 0, "k", "v2").ok());
  const std::vector<TopicPartitionOffset> second{{input, 0, 42}};
  REQUIRE(producer->SendOffsetsToTransaction(second, **consumer, kTestDeadline).ok());
  REQUIRE(producer->CommitTransaction(kTestDeadline).ok());
  auto after_commit = (*consumer)->Committed(partitions, kTestDeadline);
  REQUIRE(after_commit.ok());
  if (fx.real()) CHECK((*after_commit)[0].offset == 42);
  REQUIRE((*consumer)->Close().ok());
  if (!fx.real()) CRMSTREAM_SKIP(kMockLimitation);  // the commit was not checked
}

TEST_CASE("Delivered offsets are tracked per partition for changelog checkpoints",
          "[kafka][integration][transactions]") {
  BrokerUnderTest fx;
  const std::string topic = fx.Topic("tracked", 2);
  auto producer = MakeTransactional(fx, fx.Id("txn-test-4"));
  producer->TrackDeliveredOffsets(topic);
  CHECK(producer->LastDeliveredOffset(topic, 0) == -1);
  REQUIRE(producer->BeginTransaction().ok());
  for (int i = 0; i < 7; ++i) REQUIRE(producer->Produce(topic, 0, "k", "v").ok());
  for (int i = 0; i < 3; ++i) REQUIRE(producer->Produce(topic, 1, "k", "v").ok());
  REQUIRE(producer->CommitTransaction(kTestDeadline).ok());
  // Offsets 0..6 and 0..2 on a fresh topic.
  CHECK(producer->LastDeliveredOffset(topic, 0) == 6);
  CHECK(producer->LastDeliveredOffset(topic, 1) == 2);
  CHECK(producer->LastDeliveredOffset("other", 0) == -1);
}

}  // namespace
}  // namespace crmstream::kafka
