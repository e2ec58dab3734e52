#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using testing::EmbeddedBroker;
using testing::kTestDeadline;
using testing::RealBroker;
using testing::Received;

// Remembers what the group told this member, and optionally picks start
// offsets, as the state module will from its checkpoints.
class RecordingListener : public RebalanceListener {
 public:
  void OnAssigned(std::span<TopicPartitionOffset> partitions) override {
    for (TopicPartitionOffset& tp : partitions) {
      assigned.insert({tp.topic, tp.partition});
      CHECK(tp.offset == kOffsetCommitted);
      if (start_offset) tp.offset = *start_offset;
    }
    ++assign_calls;
  }
  void OnRevoked(std::span<const TopicPartition> partitions) override {
    for (const TopicPartition& tp : partitions) {
      assigned.erase(tp);
      revoked.insert(tp);
    }
    ++revoke_calls;
  }

  std::set<TopicPartition> assigned;
  std::set<TopicPartition> revoked;
  int assign_calls = 0;
  int revoke_calls = 0;
  std::optional<int64_t> start_offset;
};

std::set<TopicPartition> AsSet(const std::vector<TopicPartition>& v) {
  return std::set<TopicPartition>(v.begin(), v.end());
}

void SplitAndReadEverything(crmstream::testing::TestBroker& fx, const std::string& strategy,
                            std::string_view expected_protocol) {
  const std::string topic = fx.CreateTopic("split", 4);
  ClientConfig config = fx.consumer_config();
  config.Set("partition.assignment.strategy", strategy);

  RecordingListener listener_a;
  RecordingListener listener_b;
  const std::string group = fx.Name("splitters");
  auto a = Consumer::Create(config, group, ConsumerOptions{.listener = &listener_a});
  auto b = Consumer::Create(config, group, ConsumerOptions{.listener = &listener_b});
  REQUIRE_OK(a);
  REQUIRE_OK(b);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*a)->Subscribe(topics));
  REQUIRE_OK((*b)->Subscribe(topics));

  // Both members must keep polling for the group to settle; settled means
  // each holds a share and together they hold all four partitions once.
  MessageBatch batch(64);
  std::vector<Received> early;
  const std::set<TopicPartition> all{{topic, 0}, {topic, 1}, {topic, 2}, {topic, 3}};
  const bool settled = testing::PollUntil([&] {
    REQUIRE_OK((*a)->ConsumeBatch(50, &batch));
    testing::AppendBatch(batch, &early);
    REQUIRE_OK((*b)->ConsumeBatch(50, &batch));
    testing::AppendBatch(batch, &early);
    auto sa = AsSet(*(*a)->Assignment());
    auto sb = AsSet(*(*b)->Assignment());
    std::set<TopicPartition> both = sa;
    both.insert(sb.begin(), sb.end());
    return !sa.empty() && !sb.empty() && sa.size() + sb.size() == 4 && both == all;
  });
  INFO("member a holds " << (*a)->Assignment()->size() << " after " << (*a)->rebalance_count()
                         << " rebalances; member b holds " << (*b)->Assignment()->size()
                         << " after " << (*b)->rebalance_count());
  REQUIRE(settled);
  CHECK(early.empty());
  CHECK((*a)->rebalance_protocol() == expected_protocol);
  // The listeners saw the same split as the client's own assignment.
  CHECK(listener_a.assigned == AsSet(*(*a)->Assignment()));
  CHECK(listener_b.assigned == AsSet(*(*b)->Assignment()));

  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  constexpr int kMessages = 2000;
  testing::ProduceKeyed(**producer, topic, 0, kMessages, 101);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  std::vector<Received> from_a;
  std::vector<Received> from_b;
  testing::PollUntil([&] {
    REQUIRE_OK((*a)->ConsumeBatch(50, &batch));
    testing::AppendBatch(batch, &from_a);
    REQUIRE_OK((*b)->ConsumeBatch(50, &batch));
    testing::AppendBatch(batch, &from_b);
    return from_a.size() + from_b.size() >= kMessages;
  });
  batch.Clear();
  CHECK(!from_a.empty());
  CHECK(!from_b.empty());
  // Each member read only its own partitions, and together everything once.
  const auto owned_a = AsSet(*(*a)->Assignment());
  std::set<std::string> values;
  for (const Received& m : from_a) {
    CHECK(owned_a.count({m.topic, m.partition}) == 1);
    values.insert(m.value);
  }
  for (const Received& m : from_b) {
    CHECK(owned_a.count({m.topic, m.partition}) == 0);
    values.insert(m.value);
  }
  CHECK(from_a.size() + from_b.size() == kMessages);
  CHECK(values.size() == kMessages);

  REQUIRE_OK((*a)->Close());
  REQUIRE_OK((*b)->Close());
  // Closing revokes everything the member held.
  CHECK(listener_a.assigned.empty());
  CHECK(listener_b.assigned.empty());
}

TEMPLATE_TEST_CASE("Two eager group members split the partitions and read everything once",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  SplitAndReadEverything(fx, "range,roundrobin", "EAGER");
}

TEMPLATE_TEST_CASE("Two cooperative group members split the partitions and read everything once",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  SplitAndReadEverything(fx, "cooperative-sticky", "COOPERATIVE");
}

TEST_CASE("A cooperative member closed between its JoinGroup and first SyncGroup closes cleanly",
          "[kafka][integration]") {
  // librdkafka before 2.3.0 aborts the process when such a member is
  // destroyed (its issue #4312); Close() waits for the first assignment. The
  // embedded cluster holds the SyncGroup answer for 3 s, so the close lands
  // in that window every time.
  EmbeddedBroker fx;
  const std::string topic = fx.CreateTopic("early-close", 2);
  const std::string group = fx.Name("early-closers");
  rd_kafka_mock_cluster_t* mock = fx.embedded()->mock_handle();
  constexpr int32_t kCoordinator = 1;
  constexpr int16_t kSyncGroupApiKey = 14;
  REQUIRE(rd_kafka_mock_coordinator_set(mock, "group", group.c_str(), kCoordinator) ==
          RD_KAFKA_RESP_ERR_NO_ERROR);
  REQUIRE(rd_kafka_mock_broker_push_request_error_rtts(mock, kCoordinator, kSyncGroupApiKey, 1,
                                                       RD_KAFKA_RESP_ERR_NO_ERROR,
                                                       3000) == RD_KAFKA_RESP_ERR_NO_ERROR);

  ClientConfig config = fx.consumer_config();
  config.Set("partition.assignment.strategy", "cooperative-sticky");
  RecordingListener listener;
  auto consumer = Consumer::Create(config, group, ConsumerOptions{.listener = &listener});
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  MessageBatch batch(16);
  const bool joined = testing::PollUntil([&] {
    REQUIRE_OK((*consumer)->ConsumeBatch(20, &batch));
    char* member_id = rd_kafka_memberid((*consumer)->handle());
    const bool has_id = member_id != nullptr && member_id[0] != '\0';
    if (member_id != nullptr) rd_kafka_mem_free((*consumer)->handle(), member_id);
    return has_id;
  });
  REQUIRE(joined);
  // In the window: the JoinGroup was answered, the SyncGroup not yet.
  REQUIRE((*consumer)->rebalance_count() == 0);

  REQUIRE_OK((*consumer)->Close());
  // Close waited for the first assignment and gave it back, without telling
  // the listener of either.
  CHECK((*consumer)->rebalance_count() >= 1);
  CHECK(listener.assign_calls == 0);
  CHECK(listener.revoke_calls == 0);
  (*consumer).reset();  // destroys the client: the step that aborted
}

TEMPLATE_TEST_CASE("A new member resumes exactly after the committed offsets",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("resume", 4);
  const std::string group = fx.Name("resumers");
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  constexpr int kMessages = 800;
  testing::ProduceKeyed(**producer, topic, 0, kMessages, 37);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  const std::vector<std::string> topics{topic};
  // The mock coordinator keeps a group that its last member left in
  // "joining" for a whole session timeout before it admits a new member; the
  // fixture's short session keeps that wait to a few seconds.
  const ClientConfig config = fx.consumer_config();

  // First member: read everything, commit the first half of each partition.
  std::map<int32_t, std::vector<int64_t>> offsets_by_partition;
  std::vector<TopicPartitionOffset> commits;
  {
    auto first = Consumer::Create(config, group);
    REQUIRE_OK(first);
    REQUIRE_OK((*first)->Subscribe(topics));
    const auto received = testing::ConsumeUntil(**first, kMessages);
    REQUIRE(received.size() == kMessages);
    for (const Received& m : received) offsets_by_partition[m.partition].push_back(m.offset);
    for (auto& [partition, offsets] : offsets_by_partition) {
      std::sort(offsets.begin(), offsets.end());
      // Next offset to read = last processed + 1.
      commits.push_back({topic, partition, offsets[offsets.size() / 2 - 1] + 1});
    }
    REQUIRE_OK((*first)->CommitOffsets(commits, /*async=*/false));

    std::vector<TopicPartition> parts;
    for (const auto& c : commits) parts.push_back({c.topic, c.partition});
    auto committed = (*first)->Committed(parts, kTestDeadline);
    REQUIRE_OK(committed);
    for (size_t i = 0; i < commits.size(); ++i) CHECK((*committed)[i].offset == commits[i].offset);
    REQUIRE_OK((*first)->Close());
  }

  // Expected for the second member: every offset at or after the commit.
  std::set<std::pair<int32_t, int64_t>> expected;
  for (const auto& c : commits) {
    for (int64_t offset : offsets_by_partition[c.partition]) {
      if (offset >= c.offset) expected.insert({c.partition, offset});
    }
  }

  auto second = Consumer::Create(config, group);
  REQUIRE_OK(second);
  REQUIRE_OK((*second)->Subscribe(topics));
  const auto received = testing::ConsumeUntil(**second, expected.size());
  // Nothing more than the uncommitted tail may follow: drain briefly.
  const auto extra = testing::ConsumeUntil(**second, 1, std::chrono::milliseconds(500));
  CHECK(extra.empty());
  std::set<std::pair<int32_t, int64_t>> got;
  for (const Received& m : received) got.insert({m.partition, m.offset});
  CHECK(received.size() == expected.size());
  CHECK(got == expected);
}

TEMPLATE_TEST_CASE("The rebalance listener chooses where newly assigned partitions start",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("restart-from-state", 2, 1);
  const std::string group = fx.Name("stateful");
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  for (int i = 0; i < 20; ++i) {
    REQUIRE_OK((*producer)->Produce(topic, i % 2, "k", std::to_string(i)));
  }
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  // The group has a committed offset (2) that the listener overrides with 7,
  // as when local state was checkpointed further along than the group.
  {
    auto committer = Consumer::Create(fx.consumer_config(), group);
    REQUIRE_OK(committer);
    const std::vector<TopicPartitionOffset> commits{{topic, 0, 2}, {topic, 1, 2}};
    REQUIRE_OK((*committer)->CommitOffsets(commits, false));
  }

  RecordingListener listener;
  listener.start_offset = 7;
  auto consumer =
      Consumer::Create(fx.consumer_config(), group, ConsumerOptions{.listener = &listener});
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  const auto received = testing::ConsumeUntil(**consumer, 6);
  REQUIRE(received.size() == 6);
  std::set<std::pair<int32_t, int64_t>> got;
  for (const Received& m : received) got.insert({m.partition, m.offset});
  CHECK(got ==
        std::set<std::pair<int32_t, int64_t>>{{0, 7}, {0, 8}, {0, 9}, {1, 7}, {1, 8}, {1, 9}});
  CHECK(listener.assign_calls >= 1);
}

TEMPLATE_TEST_CASE("WaitForAssignment returns once the group has assigned partitions",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("waiting", 3, 1);
  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("waiters"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  MessageBatch batch(8);
  auto assigned = (*consumer)->WaitForAssignment(kTestDeadline, &batch);
  REQUIRE_OK(assigned);
  CHECK(*assigned);
  CHECK((*consumer)->Assignment()->size() == 3);
  CHECK((*consumer)->rebalance_count() >= 1);
}

}  // namespace
}  // namespace crmstream::kafka
