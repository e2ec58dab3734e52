// Reads the output topics back as an independent consumer (its own group),
// so the main job shows what really arrived on the topics, not what the
// engine believes it sent. Runs on its own thread; counts are atomics and
// the latest record per topic is guarded by a mutex (a few reads a second).
#pragma once

#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "crmstream/config/engine_config.h"
#include "crmstream/pipeline/output_sink.h"

namespace crmstream::cli {

class OutputWatcher {
 public:
  explicit OutputWatcher(const config::EngineConfig& config);
  ~OutputWatcher();
  void Start();
  void Stop();

  uint64_t count(pipeline::OutputKind kind) const;
  std::string latest(pipeline::OutputKind kind) const;

 private:
  void Loop();

  config::EngineConfig config_;
  std::array<std::string, pipeline::kOutputKindCount> topics_;
  std::array<std::atomic<uint64_t>, pipeline::kOutputKindCount> counts_{};
  mutable std::mutex mu_;
  std::array<std::string, pipeline::kOutputKindCount> latest_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace crmstream::cli
