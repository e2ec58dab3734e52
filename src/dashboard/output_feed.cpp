#include "crmstream/dashboard/output_feed.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "crmstream/kafka/consumer.h"

namespace crmstream::dashboard {

OutputFeed::OutputFeed(ClientConfigSource source, OutputFeedOptions options, DashboardView* view)
    : source_(std::move(source)), options_(std::move(options)), view_(view) {}

OutputFeed::~OutputFeed() { Stop(); }

void OutputFeed::Start() {
  if (thread_.joinable()) return;
  stop_.store(false);
  thread_ = std::thread([this] { Loop(); });
}

void OutputFeed::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::string OutputFeed::latest(OutputKind kind) const {
  std::lock_guard<std::mutex> lock(latest_mu_);
  return latest_[static_cast<size_t>(kind)];
}

namespace {

using Clock = std::chrono::steady_clock;

std::string BootstrapOf(const kafka::ClientConfig& c) {
  auto v = c.Get("bootstrap.servers");
  return v ? std::string(*v) : std::string();
}

}  // namespace

void OutputFeed::Loop() {
  const std::vector<std::string> topics(options_.topics.begin(), options_.topics.end());
  kafka::MessageBatch batch(1024);
  std::unique_ptr<kafka::Consumer> consumer;
  std::string bootstrap;
  auto last_progress = Clock::now();
  uint64_t errors_seen = 0;
  auto sleep_a_little = [&] {
    for (int i = 0; i < 10 && !stop_.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };

  while (!stop_.load()) {
    if (!consumer) {
      auto client = source_();
      if (!client.ok()) {
        view_->SetFeedStatus(false, client.status().ToString());
        sleep_a_little();
        continue;
      }
      kafka::ClientConfig c = *client;
      c.Set("isolation.level", "read_committed");
      c.Set("auto.offset.reset", options_.offset_reset);
      // Topics created after we subscribed (the engine not yet started) are
      // found within seconds instead of librdkafka's default five minutes.
      c.Set("topic.metadata.refresh.interval.ms", "2000");
      c.SetDefault("log_level", "3");
      auto created = kafka::Consumer::Create(c, options_.group_id);
      Status st = created.ok() ? (*created)->Subscribe(topics) : created.status();
      if (!st.ok()) {
        view_->SetFeedStatus(false, st.ToString());
        spdlog::warn("dashboard feed: {}", st.ToString());
        sleep_a_little();
        continue;
      }
      consumer = std::move(created).value();
      bootstrap = BootstrapOf(c);
      errors_seen = 0;
      last_progress = Clock::now();
      view_->SetFeedStatus(true, "connected to " + bootstrap);
    }

    auto n = consumer->ConsumeBatch(options_.poll_timeout_ms, &batch);
    if (!n.ok()) {
      // A fatal client error: start over with a new client.
      view_->SetFeedStatus(false, n.status().ToString());
      spdlog::warn("dashboard feed: {}; reconnecting", n.status().ToString());
      batch.Clear();
      (void)consumer->Close();
      consumer.reset();
      reconnects_.fetch_add(1);
      sleep_a_little();
      continue;
    }
    // The batch's last record of each topic becomes its latest.
    std::array<size_t, kOutputKindCount> last;
    last.fill(SIZE_MAX);
    for (size_t i = 0; i < batch.size(); ++i) {
      kafka::MessageView m = batch[i];
      for (int t = 0; t < kOutputKindCount; ++t) {
        if (m.topic() != options_.topics[static_cast<size_t>(t)]) continue;
        view_->Apply(static_cast<OutputKind>(t), m.payload());
        last[static_cast<size_t>(t)] = i;
        break;
      }
    }
    if (*n > 0) {
      std::lock_guard<std::mutex> lock(latest_mu_);
      for (size_t t = 0; t < last.size(); ++t) {
        if (last[t] != SIZE_MAX) latest_[t].assign(batch[last[t]].payload());
      }
    }
    records_.fetch_add(batch.size(), std::memory_order_relaxed);
    batch.Clear();

    const auto now = Clock::now();
    const uint64_t errors = consumer->consume_errors();
    if (errors != errors_seen) {
      view_->SetFeedStatus(false, consumer->last_consume_error().ToString());
    } else if (*n > 0) {
      view_->SetFeedStatus(true, "connected to " + bootstrap);
    }
    errors_seen = errors;
    if (*n > 0) {
      last_progress = now;
      continue;
    }
    if (now - last_progress < std::chrono::milliseconds(options_.reconnect_after_ms)) continue;
    // Silent for a while: has the broker moved (restarted on a new address)?
    // Asking is cheap (e.g. reading an address file); an idle engine on the
    // same address changes nothing.
    last_progress = now;
    auto client = source_();
    if (client.ok() && BootstrapOf(*client) != bootstrap) {
      spdlog::info("dashboard feed: broker address changed to {}; reconnecting",
                   BootstrapOf(*client));
      view_->SetFeedStatus(false, "reconnecting to " + BootstrapOf(*client));
      (void)consumer->Close();
      consumer.reset();
      reconnects_.fetch_add(1);
    }
  }
  if (consumer) (void)consumer->Close();
  view_->SetFeedStatus(false, "stopped");
}

}  // namespace crmstream::dashboard
