// The kafka module's consumer against the bare librdkafka loop: the same
// topic on the embedded cluster read by MeasureBareConsumerRate and by
// Consumer::ConsumeBatch (views into MessageBatch, explicit commit at the
// end), in the same run. The figure is the ratio wrapper / bare; the wrapper
// should cost nothing measurable.
//
//   build/release/bench/bench_kafka_consumer
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <string>

#include "crmstream/kafka/bare_consumer.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"

namespace crmstream::kafka {
namespace {

// 400,000 messages of ~230 bytes (200-byte value, key, record overhead)
// over 64 partitions: about 1.5 MB per partition, well inside the mock's
// 5 MiB-per-partition log bound, so nothing is dropped before it is read.
constexpr int kMessages = 400000;
constexpr int kPartitions = 64;
static_assert(static_cast<size_t>(kMessages) * 230 / kPartitions <
              EmbeddedCluster::kMaxPartitionLogBytes / 2);

void BM_ConsumerVsBare(benchmark::State& state) {
  for (auto _ : state) {
    auto cluster = EmbeddedCluster::Create();
    if (!cluster.ok()) return state.SkipWithError(cluster.status().ToString().c_str());
    // Both readers bounded by their queue's bytes, not librdkafka's default
    // message count, whose fixed-second fetch pause would time that instead.
    ClientConfig config{{"bootstrap.servers", (*cluster)->bootstrap_servers()},
                        {"queued.min.messages", "10000000"}};
    if (!(*cluster)->CreateTopic("bench", kPartitions, 1).ok()) {
      return state.SkipWithError("create topic");
    }
    {
      auto producer = Producer::Create(config, ProducerOptions{.linger_ms = 20});
      if (!producer.ok()) return state.SkipWithError(producer.status().ToString().c_str());
      const std::string value(200, 'v');
      for (int i = 0; i < kMessages; ++i) {
        const std::string key = "customer-" + std::to_string(i % 10007);
        if (!(*producer)->Produce("bench", kPartitionUnassigned, key, value).ok()) {
          return state.SkipWithError("produce");
        }
      }
      if (!(*producer)->Flush(std::chrono::seconds(120)).ok()) return state.SkipWithError("flush");
    }

    auto bare = MeasureBareConsumerRate(config, "bench", kMessages);
    if (!bare.ok()) return state.SkipWithError(bare.status().ToString().c_str());

    auto consumer = Consumer::Create(config, "bench-wrapper");
    if (!consumer.ok()) return state.SkipWithError(consumer.status().ToString().c_str());
    const std::vector<std::string> topics{"bench"};
    if (!(*consumer)->Subscribe(topics).ok()) return state.SkipWithError("subscribe");
    MessageBatch batch(1024);
    std::map<int32_t, int64_t> next_offsets;
    uint64_t received = 0;
    uint64_t bytes = 0;
    std::chrono::steady_clock::time_point first{};
    std::chrono::steady_clock::time_point last{};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (received < static_cast<uint64_t>(kMessages) &&
           std::chrono::steady_clock::now() < deadline) {
      auto n = (*consumer)->ConsumeBatch(100, &batch);
      if (!n.ok()) return state.SkipWithError(n.status().ToString().c_str());
      if (*n == 0) continue;
      if (received == 0) first = std::chrono::steady_clock::now();
      for (size_t i = 0; i < batch.size(); ++i) {
        const MessageView m = batch[i];
        bytes += m.payload().size();
        next_offsets[m.partition()] = m.offset() + 1;
      }
      received += *n;
      last = std::chrono::steady_clock::now();
    }
    batch.Clear();
    if (received < static_cast<uint64_t>(kMessages)) return state.SkipWithError("timed out");
    std::vector<TopicPartitionOffset> commits;
    for (const auto& [partition, offset] : next_offsets)
      commits.push_back({"bench", partition, offset});
    if (!(*consumer)->CommitOffsets(commits, false).ok()) return state.SkipWithError("commit");
    (void)(*consumer)->Close();

    const double seconds = std::chrono::duration<double>(last - first).count();
    const double rate = static_cast<double>(received) / seconds;
    state.SetIterationTime(seconds);
    state.counters["bare_msg_s"] = bare->messages_per_second;
    state.counters["consumer_msg_s"] = rate;
    state.counters["consumer_over_bare"] = rate / bare->messages_per_second;
    benchmark::DoNotOptimize(bytes);
  }
}
BENCHMARK(BM_ConsumerVsBare)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace
}  // namespace crmstream::kafka

BENCHMARK_MAIN();
