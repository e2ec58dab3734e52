// Helpers shared by the scoring parts' sources; not part of the module's API.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/clock.h"
#include "crmstream/common/status.h"

namespace crmstream::scoring::internal {

inline constexpr int64_t kMillisPerMinute = 60'000;
inline constexpr int64_t kMillisPerDay = 86'400'000;

using crmstream::FloorDiv;

// Reads a length-prefixed nested model blob and deserialises it with `T`.
template <typename T>
Result<T> ReadNested(BinaryReader& in, std::string* scratch) {
  CRM_RETURN_NOT_OK(in.GetBytes(scratch));
  return T::Deserialize(*scratch);
}

// A part's section of a customer record (CustomerModels seals the record):
// u16 format version, u32 payload length, payload. Appended in place to the
// record, so encoding a customer allocates nothing once the record buffer
// has grown.
class SectionWriter {
 public:
  SectionWriter(std::string* record, uint16_t version) : record_(record), w_(record) {
    w_.Put<uint16_t>(version);
    length_at_ = record->size();
    w_.Put<uint32_t>(0);
  }
  SectionWriter(const SectionWriter&) = delete;
  SectionWriter& operator=(const SectionWriter&) = delete;
  // Patches the payload length in.
  ~SectionWriter() {
    const auto length = static_cast<uint32_t>(record_->size() - length_at_ - sizeof(uint32_t));
    std::memcpy(record_->data() + length_at_, &length, sizeof(length));
  }
  BinaryWriter& writer() { return w_; }

 private:
  std::string* record_;
  BinaryWriter w_;
  size_t length_at_ = 0;
};

// Reads the section at `in` into `*payload`, its version (from `oldest` to
// `newest`) into `*version`: Corruption (naming `what`) for another
// version, a truncated section or a bad length.
inline Status ReadSection(BinaryReader* in, uint16_t oldest, uint16_t newest, std::string_view what,
                          std::string* payload, uint16_t* version) {
  CRM_RETURN_NOT_OK(in->Get(version));
  if (*version < oldest || *version > newest) {
    return Status::Corruption(std::string(what) + ": section version " + std::to_string(*version) +
                              ", expected " + std::to_string(oldest) +
                              (oldest == newest ? "" : " to " + std::to_string(newest)));
  }
  return in->GetBytes(payload);
}

// The same for a part that reads one version only.
inline Status ReadSection(BinaryReader* in, uint16_t version, std::string_view what,
                          std::string* payload) {
  uint16_t v = 0;
  return ReadSection(in, version, version, what, payload, &v);
}

}  // namespace crmstream::scoring::internal
