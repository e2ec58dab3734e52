#include "crmstream/pipeline/model_sync.h"

#include <algorithm>
#include <charconv>

#include "crmstream/common/binary_io.h"

namespace crmstream::pipeline {
namespace {

// A chunk count no real blob needs; bounds what a corrupt record allocates.
constexpr uint32_t kMaxChunks = 1u << 16;

bool ParseDecimal(std::string_view text, int64_t* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && *out >= 0;
}

// Splits the key's four fields; false if there are not exactly four.
bool SplitKey(std::string_view key, std::string_view fields[4]) {
  for (int i = 0; i < 3; ++i) {
    const size_t nl = key.find('\n');
    if (nl == std::string_view::npos) return false;
    fields[i] = key.substr(0, nl);
    key.remove_prefix(nl + 1);
  }
  fields[3] = key;
  return key.find('\n') == std::string_view::npos;
}

}  // namespace

std::string ModelSyncTopic(std::string_view application_id) {
  std::string topic(application_id);
  topic += ".model-sync";
  return topic;
}

void EncodeModelSyncRecords(std::string_view application_id, std::string_view input_topic,
                            int32_t partition, int64_t generation, std::string_view statistics,
                            size_t chunk_bytes, std::vector<ModelSyncRecord>* out) {
  chunk_bytes = std::max<size_t>(chunk_bytes, 1);
  const auto chunks = static_cast<uint32_t>(
      std::max<size_t>(1, (statistics.size() + chunk_bytes - 1) / chunk_bytes));
  std::string prefix(application_id);
  prefix += '\n';
  prefix += input_topic;
  prefix += '\n';
  prefix += std::to_string(partition);
  prefix += '\n';
  for (uint32_t c = 0; c < chunks; ++c) {
    ModelSyncRecord& r = out->emplace_back();
    r.key = prefix + std::to_string(c);
    BinaryWriter w(&r.value);
    w.Put<int64_t>(generation);
    w.Put<uint32_t>(c);
    w.Put<uint32_t>(chunks);
    r.value.append(statistics.substr(static_cast<size_t>(c) * chunk_bytes, chunk_bytes));
  }
}

Status ModelSyncBoard::Apply(std::string_view key, std::string_view value) {
  std::string_view fields[4];
  if (!SplitKey(key, fields)) {
    ++refused_records_;
    return Status::Corruption("model-sync record: malformed key");
  }
  if (fields[0] != application_id_) {
    ++foreign_records_;
    return Status::OK();
  }
  int64_t partition = 0;
  int64_t key_chunk = 0;
  if (fields[1].empty() || !ParseDecimal(fields[2], &partition) || partition > INT32_MAX ||
      !ParseDecimal(fields[3], &key_chunk)) {
    ++refused_records_;
    return Status::Corruption("model-sync record: malformed key");
  }
  BinaryReader r(value);
  int64_t generation = 0;
  uint32_t chunk = 0;
  uint32_t chunks = 0;
  if (!r.Get(&generation).ok() || !r.Get(&chunk).ok() || !r.Get(&chunks).ok() || generation < 0 ||
      chunks == 0 || chunks > kMaxChunks || chunk >= chunks ||
      static_cast<int64_t>(chunk) != key_chunk) {
    ++refused_records_;
    return Status::Corruption("model-sync record: malformed value");
  }
  Partition& p = partitions_[{std::string(fields[1]), static_cast<int32_t>(partition)}];
  if (generation <= p.generation || generation < p.pending_generation) return Status::OK();
  if (generation > p.pending_generation || p.chunks.size() != chunks) {
    p.pending_generation = generation;
    p.chunks.assign(chunks, std::string());
    p.received.assign(chunks, false);
    p.received_count = 0;
  }
  if (!p.received[chunk]) {
    p.received[chunk] = true;
    ++p.received_count;
  }
  p.chunks[chunk].assign(value.substr(value.size() - r.remaining()));
  if (p.received_count < chunks) return Status::OK();

  std::string blob;
  for (const std::string& c : p.chunks) blob += c;
  p.chunks.clear();
  p.received.clear();
  p.received_count = 0;
  auto statistics = scoring::ModelStatistics::Decode(blob);
  if (!statistics.ok()) {
    ++refused_records_;
    return statistics.status();
  }
  p.generation = generation;
  p.statistics = std::move(statistics).value();
  changed_ = true;
  return Status::OK();
}

Result<scoring::ModelStatistics> ModelSyncBoard::Merge() const {
  scoring::ModelStatistics merged;
  for (const auto& [id, p] : partitions_) {
    if (p.generation < 0) continue;
    CRM_RETURN_NOT_OK(merged.Merge(p.statistics));
  }
  return merged;
}

size_t ModelSyncBoard::partitions() const {
  return static_cast<size_t>(std::count_if(partitions_.begin(), partitions_.end(),
                                           [](const auto& e) { return e.second.generation >= 0; }));
}

}  // namespace crmstream::pipeline
