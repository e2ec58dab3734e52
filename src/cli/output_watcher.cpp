#include "output_watcher.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "crmstream/kafka/consumer.h"
#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::cli {

OutputWatcher::OutputWatcher(const config::EngineConfig& config)
    : config_(config), topics_(config.outputs.Names()) {}

OutputWatcher::~OutputWatcher() { Stop(); }

void OutputWatcher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void OutputWatcher::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

uint64_t OutputWatcher::count(pipeline::OutputKind kind) const {
  return counts_[static_cast<int>(kind)].load(std::memory_order_relaxed);
}

std::string OutputWatcher::latest(pipeline::OutputKind kind) const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_[static_cast<int>(kind)];
}

void OutputWatcher::Loop() {
  kafka::ClientConfig client = runtime::MakeClientConfig(config_.kafka);
  client.Set("isolation.level", "read_committed");
  // The embedded cluster keeps only 5 MiB per partition: when this reader
  // falls behind, skip to the newest records rather than replaying old ones.
  client.Set("auto.offset.reset", "latest");
  client.Set("log_level", "3");
  auto consumer = kafka::Consumer::Create(
      client, config_.kafka.group_id + "-watch-" + std::to_string(getpid()));
  if (!consumer.ok()) {
    spdlog::error("output watcher: {}", consumer.status().ToString());
    return;
  }
  std::vector<std::string> topics(topics_.begin(), topics_.end());
  if (Status st = (*consumer)->Subscribe(topics); !st.ok()) {
    spdlog::error("output watcher: {}", st.ToString());
    return;
  }
  kafka::MessageBatch batch(1024);
  while (!stop_.load()) {
    auto n = (*consumer)->ConsumeBatch(200, &batch);
    if (!n.ok()) continue;
    // The last record of each topic in this batch becomes its "latest".
    std::array<int64_t, pipeline::kOutputKindCount> last{};
    last.fill(-1);
    for (size_t i = 0; i < batch.size(); ++i) {
      kafka::MessageView m = batch[i];
      for (int k = 0; k < pipeline::kOutputKindCount; ++k) {
        if (m.topic() != topics_[k]) continue;
        counts_[k].fetch_add(1, std::memory_order_relaxed);
        last[k] = static_cast<int64_t>(i);
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int k = 0; k < pipeline::kOutputKindCount; ++k) {
        if (last[k] >= 0) latest_[k].assign(batch[static_cast<size_t>(last[k])].payload());
      }
    }
    batch.Clear();
  }
  (void)(*consumer)->Close();
}

}  // namespace crmstream::cli
