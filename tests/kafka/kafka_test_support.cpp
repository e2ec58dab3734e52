#include "kafka/kafka_test_support.h"

#include <catch2/catch.hpp>

#include "support/require_ok.h"

namespace crmstream::kafka::testing {

void AppendBatch(const MessageBatch& batch, std::vector<Received>* out) {
  for (size_t i = 0; i < batch.size(); ++i) {
    const MessageView m = batch[i];
    out->push_back({std::string(m.topic()), m.partition(), m.offset(), std::string(m.key()),
                    std::string(m.payload())});
  }
}

std::vector<Received> ConsumeUntil(Consumer& consumer, size_t want,
                                   std::chrono::milliseconds deadline) {
  std::vector<Received> received;
  MessageBatch batch(256);
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (received.size() < want && std::chrono::steady_clock::now() < until) {
    auto n = consumer.ConsumeBatch(100, &batch);
    REQUIRE_OK(n);
    AppendBatch(batch, &received);
  }
  batch.Clear();
  return received;
}

bool PollUntil(const std::function<bool()>& poll_once_and_check,
               std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (poll_once_and_check()) return true;
  }
  return poll_once_and_check();
}

void ProduceKeyed(Producer& producer, const std::string& topic, int first_seq, int count,
                  int keys) {
  for (int i = 0; i < count; ++i) {
    const int seq = first_seq + i;
    const std::string key = "customer-" + std::to_string(seq % keys);
    const std::string value = std::to_string(seq);
    REQUIRE_OK(producer.Produce(topic, kPartitionUnassigned, key, value));
  }
}

}  // namespace crmstream::kafka::testing
