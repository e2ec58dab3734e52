// Versioned, checksummed binary encoding shared by everything that persists
// or ships state: model blobs, feature records, checkpoints.
//
// A blob is an envelope around a payload:
//   magic "CRMS" | u16 kind | u16 version | u32 payload length | payload | u32 crc32c
// Integers are little-endian; doubles are their IEEE-754 bits. A reader of a
// truncated, corrupted or foreign blob gets Status::Corruption, never UB.
//
// Not thread-safe; cheap to construct.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream {

uint32_t Crc32c(const void* data, size_t n, uint32_t seed = 0);
// The same, one byte per table lookup: the fallback where the CPU has no
// CRC32C instruction, and the reference the fast path is tested against.
uint32_t Crc32cPortable(const void* data, size_t n, uint32_t seed = 0);

// Appends little-endian fields to a string.
class BinaryWriter {
 public:
  explicit BinaryWriter(std::string* out) : out_(out) {}

  template <typename T>
  requires std::is_arithmetic_v<T>
  void Put(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));  // host is little-endian (x86-64, aarch64)
    out_->append(buf, sizeof(T));
  }
  void PutBytes(std::string_view bytes) {
    Put<uint32_t>(static_cast<uint32_t>(bytes.size()));
    out_->append(bytes);
  }
  template <typename T>
  requires std::is_arithmetic_v<T>
  void PutArray(std::span<const T> values) {
    Put<uint32_t>(static_cast<uint32_t>(values.size()));
    if (!values.empty()) {
      out_->append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
    }
  }
  std::string* buffer() { return out_; }

 private:
  std::string* out_;
};

// Reads what BinaryWriter wrote; every read is bounds-checked.
class BinaryReader {
 public:
  explicit BinaryReader(std::string_view in) : in_(in) {}

  template <typename T>
  requires std::is_arithmetic_v<T> Status Get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return Truncated();
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::OK();
  }
  Status GetBytes(std::string* out) {
    uint32_t n = 0;
    CRM_RETURN_NOT_OK(Get(&n));
    if (in_.size() - pos_ < n) return Truncated();
    out->assign(in_.data() + pos_, n);
    pos_ += n;
    return Status::OK();
  }
  // Reads an array written by PutArray; `max_len` guards against a corrupted
  // length asking for a huge allocation.
  template <typename T>
  requires std::is_arithmetic_v<T> Status GetArray(std::vector<T>* out, size_t max_len = 1u << 28) {
    uint32_t n = 0;
    CRM_RETURN_NOT_OK(Get(&n));
    if (n > max_len || (in_.size() - pos_) / sizeof(T) < n) return Truncated();
    out->resize(n);
    if (n > 0) std::memcpy(out->data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return Status::OK();
  }
  bool AtEnd() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }
  // Corruption unless everything was consumed.
  Status ExpectEnd() const;

 private:
  Status Truncated() const;
  std::string_view in_;
  size_t pos_ = 0;
};

// Kinds of blob, so a model blob is never read as another model's.
enum class BlobKind : uint16_t {
  kRecursiveLeastSquares = 1,
  kLogisticRegression = 2,
  kStandardizer = 3,
  kCategoricalEncoder = 4,
  kMiniBatchKMeans = 5,
  kUnivariateAnomaly = 6,
  kMultivariateAnomaly = 7,
  kRollingCorrelation = 8,
  kBayesianLogisticRegression = 9,
  kAssociationRules = 10,
  kItemRecommender = 11,
  kHoeffdingTree = 12,
  kAdaptiveRandomForest = 13,
  kAdwin = 14,
  kCustomerFeatures = 16,
  kCustomerModelState = 17,   // scoring::CustomerModels: one customer's record
  kPartitionModelState = 18,  // retired (state format 1); never reuse
  kDedupWindow = 19,          // ingest::DedupWindow::EncodeTo
  kProcessorState = 20,       // a partition task's own counters and schedules
  // The scoring parts' partition-wide checkpoints (crmstream/scoring/).
  kChurnPartitionState = 21,
  kSegmentPartitionState = 22,
  kBehaviourPartitionState = 23,
  kMinuteMetricsState = 24,
  kModelStatistics = 25,  // scoring::ModelStatistics: a partition's or a merged global model's
  kCheckpointMeta = 32,
};

// Wraps a payload in the envelope described above.
std::string SealBlob(BlobKind kind, uint16_t version, std::string_view payload);

struct OpenedBlob {
  uint16_t version;
  std::string_view payload;  // points into the input
};
// Checks magic, kind, length and checksum; the caller checks the version.
Result<OpenedBlob> OpenBlob(std::string_view blob, BlobKind expected_kind);
// OpenBlob for readers of exactly one format version: the payload, or
// Corruption for any other version.
Result<std::string_view> OpenBlobPayload(std::string_view blob, BlobKind expected_kind,
                                         uint16_t version);

// For a type that embeds itself in larger blobs (`void AppendTo(BinaryWriter&)
// const` and `static Result<T> ReadFrom(BinaryReader&)`): the stand-alone
// blob, and its reader, which also requires every payload byte be consumed.
template <typename T>
std::string SealAppended(BlobKind kind, uint16_t version, const T& object) {
  std::string payload;
  BinaryWriter writer(&payload);
  object.AppendTo(writer);
  return SealBlob(kind, version, payload);
}
template <typename T>
Result<T> OpenAndRead(std::string_view blob, BlobKind kind, uint16_t version) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload, OpenBlobPayload(blob, kind, version));
  BinaryReader reader(payload);
  CRM_ASSIGN_OR_RETURN(T object, T::ReadFrom(reader));
  CRM_RETURN_NOT_OK(reader.ExpectEnd());
  return object;
}

}  // namespace crmstream
