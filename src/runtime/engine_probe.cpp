#include "crmstream/runtime/engine_probe.h"

#include <cmath>
#include <cstdlib>

#include "crmstream/common/clock.h"

namespace crmstream::runtime {

DurationHistogram::DurationHistogram(std::span<const double> bounds) : bounds_(bounds) {
  // A programmer error, caught by every test that builds an engine.
  if (bounds.size() > kMaxBounds) std::abort();
}

void DurationHistogram::Observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // also maps NaN to 0
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::llround(seconds * 1e9)), std::memory_order_relaxed);
}

namespace {
constexpr size_t kMaxHeldLatencyTags = 65536;
}  // namespace

void EngineProbe::OnOutputDelivered(void* probe, uint64_t tag) {
  auto* self = static_cast<EngineProbe*>(probe);
  if (self->hold_until_commit_) {
    // Bounded (512 KiB): a replay's transaction may hold millions of outputs;
    // its first ones stand for the rest.
    if (self->held_tags_.size() < kMaxHeldLatencyTags) self->held_tags_.push_back(tag);
    return;
  }
  self->ObserveOutputLatency(tag, WallMs());
}

void EngineProbe::OutputsCommitted() {
  const int64_t now_ms = WallMs();
  for (const uint64_t tag : held_tags_) ObserveOutputLatency(tag, now_ms);
  held_tags_.clear();
}

void EngineProbe::ObserveOutputLatency(uint64_t tag, int64_t now_ms) {
  const uint64_t kind = ((tag >> kOutputLatencyKindShift) & 0xff) - 1;
  const auto origin_ms = static_cast<int64_t>(tag & ((uint64_t{1} << kOutputLatencyKindShift) - 1));
  auto& histograms = stats_.output_latency;
  if (kind >= histograms.size()) return;
  histograms[kind].Observe(static_cast<double>(now_ms - origin_ms) * 1e-3);
}

void EngineProbe::Heartbeat() { heartbeat_ms_.store(SteadyMs(), std::memory_order_relaxed); }

void EngineProbe::ChangelogRestoreStarted() {
  stats_.changelog_restores_in_progress.fetch_add(1, std::memory_order_relaxed);
}

void EngineProbe::ChangelogRestoreEnded(uint64_t records, uint64_t bytes) {
  stats_.changelog_restores_in_progress.fetch_sub(1, std::memory_order_relaxed);
  stats_.changelog_restored_records.fetch_add(records, std::memory_order_relaxed);
  stats_.changelog_restored_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void EngineProbe::CheckpointStarted() {
  stats_.checkpoint_started_ms.store(SteadyMs(), std::memory_order_relaxed);
}

void EngineProbe::CheckpointAbandoned() {
  stats_.checkpoint_started_ms.store(-1, std::memory_order_relaxed);
}

void EngineProbe::RecordCheckpoint(double seconds, uint64_t bytes, bool ok) {
  stats_.checkpoint_duration.Observe(seconds);
  stats_.checkpoint_started_ms.store(-1, std::memory_order_relaxed);
  if (!ok) {
    stats_.checkpoint_failures.fetch_add(1, std::memory_order_relaxed);
    if (stats_.checkpoint_failing_since_ms.load(std::memory_order_relaxed) < 0) {
      stats_.checkpoint_failing_since_ms.store(SteadyMs(), std::memory_order_relaxed);
    }
    return;
  }
  stats_.checkpoint_failing_since_ms.store(-1, std::memory_order_relaxed);
  stats_.checkpoints.fetch_add(1, std::memory_order_relaxed);
  stats_.checkpoint_bytes.store(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  if (static_cast<int64_t>(bytes) >
      stats_.largest_checkpoint_bytes.load(std::memory_order_relaxed)) {
    stats_.largest_checkpoint_bytes.store(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }
  stats_.last_checkpoint_unix_ms.store(WallMs(), std::memory_order_relaxed);
}

EngineHealth EngineProbe::Health(std::chrono::milliseconds stall_after) const {
  EngineHealth h;
  switch (loop_state_.load()) {
    case LoopState::kNotStarted:
      h.live = true;  // starting up is not a failure
      h.reason = "engine loop not started yet";
      return h;
    case LoopState::kStopped:
      h.reason = "engine loop stopped";
      return h;
    case LoopState::kRunning:
      break;
  }
  const int64_t now_ms = SteadyMs();
  const int64_t checkpoint_started = stats_.checkpoint_started_ms.load(std::memory_order_relaxed);
  if (checkpoint_started >= 0 && now_ms - checkpoint_started > stall_after.count()) {
    h.reason = "checkpoint stalled: running for " + std::to_string(now_ms - checkpoint_started) +
               " ms (see the crmstream_rocksdb_ metrics and the store's LOG file)";
    return h;
  }
  const int64_t idle_ms = now_ms - heartbeat_ms_.load(std::memory_order_relaxed);
  if (idle_ms > stall_after.count()) {
    h.reason = "engine loop stalled: no iteration for " + std::to_string(idle_ms) + " ms";
    return h;
  }
  const int64_t failing_since = stats_.checkpoint_failing_since_ms.load(std::memory_order_relaxed);
  if (failing_since >= 0 && now_ms - failing_since > stall_after.count()) {
    h.reason = "checkpoints failing for " + std::to_string(now_ms - failing_since) +
               " ms (see the log and crmstream_checkpoint_failures_total)";
    return h;
  }
  h.live = true;
  if (stats_.partitions.load(std::memory_order_relaxed) == 0) {
    h.reason = "no partitions assigned";
  } else if (!state_restored_.load()) {
    h.reason = "state not restored yet";
  } else {
    h.ready = true;
  }
  return h;
}

void EngineProbe::PublishLag(std::vector<PartitionLagSample> lags) {
  std::unique_lock lock(snapshot_mutex_, std::try_to_lock);
  if (lock.owns_lock()) lag_by_partition_ = std::move(lags);
}

void EngineProbe::PublishQuality(const ModelQualitySnapshot& quality) {
  std::unique_lock lock(snapshot_mutex_, std::try_to_lock);
  if (lock.owns_lock()) quality_ = quality;
}

std::vector<PartitionLagSample> EngineProbe::LagByPartition() const {
  std::lock_guard lock(snapshot_mutex_);
  return lag_by_partition_;
}

ModelQualitySnapshot EngineProbe::ModelQuality() const {
  std::lock_guard lock(snapshot_mutex_);
  return quality_;
}

}  // namespace crmstream::runtime
