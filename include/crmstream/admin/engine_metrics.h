// The engine's Prometheus metrics: a prometheus::Collectable that reads the
// engine's atomics and snapshots at scrape time (so the engine pays nothing
// per event and nothing per scrape), plus a prometheus-cpp Registry for what
// the admin server itself counts (requests, build info, start time). Every
// name comes from metric_catalogue.h.
//
// Thread-safety: Collect(), Scrape() and CountRequest() may be called from
// any thread, concurrently; the engine must outlive this object.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/admin/metric_catalogue.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/runtime/stream_engine.h"

namespace crmstream::admin {

class EngineMetrics final : public prometheus::Collectable {
 public:
  // `stall_after`: as for StreamEngine::Health (crmstream_engine_live).
  EngineMetrics(const runtime::StreamEngine* engine, const config::OutputTopics& outputs,
                std::chrono::milliseconds stall_after);

  // Every metric family: the engine's, then the registry's.
  std::vector<prometheus::MetricFamily> Collect() const override;
  // Collect() in the Prometheus text format 0.0.4.
  std::string Scrape() const;
  // One request served by the admin server.
  void CountRequest(std::string_view path, int code);

 private:
  const runtime::StreamEngine* engine_;
  std::array<std::string, pipeline::kOutputKindCount> output_topics_;
  std::chrono::milliseconds stall_after_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
};

}  // namespace crmstream::admin
