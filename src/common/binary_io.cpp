#include "crmstream/common/binary_io.h"

#include <array>
#include <cstring>

namespace crmstream {
namespace {

constexpr uint32_t kCastagnoli = 0x82F63B78u;

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoli : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = MakeCrcTable();
constexpr char kMagic[4] = {'C', 'R', 'M', 'S'};
constexpr size_t kHeaderSize = 4 + 2 + 2 + 4;
constexpr size_t kTrailerSize = 4;

}  // namespace

uint32_t Crc32cPortable(const void* data, size_t n, uint32_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~seed;
  for (size_t i = 0; i < n; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
namespace {

// SSE4.2's crc32 instruction computes exactly CRC32C: 8 bytes per step
// instead of one table lookup per byte (checkpoints and restores CRC every
// blob they write or read: megabytes per checkpoint).
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(const void* data, size_t n,
                                                          uint32_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~seed;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}

const bool kHardwareCrc = __builtin_cpu_supports("sse4.2");

}  // namespace

uint32_t Crc32c(const void* data, size_t n, uint32_t seed) {
  return kHardwareCrc ? Crc32cHardware(data, n, seed) : Crc32cPortable(data, n, seed);
}
#else
uint32_t Crc32c(const void* data, size_t n, uint32_t seed) { return Crc32cPortable(data, n, seed); }
#endif

Status BinaryReader::ExpectEnd() const {
  if (AtEnd()) return Status::OK();
  return Status::Corruption(std::to_string(remaining()) + " unexpected trailing bytes");
}

Status BinaryReader::Truncated() const {
  return Status::Corruption("truncated at byte " + std::to_string(pos_) + " of " +
                            std::to_string(in_.size()));
}

std::string SealBlob(BlobKind kind, uint16_t version, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size() + kTrailerSize);
  out.append(kMagic, sizeof(kMagic));
  BinaryWriter w(&out);
  w.Put<uint16_t>(static_cast<uint16_t>(kind));
  w.Put<uint16_t>(version);
  w.Put<uint32_t>(static_cast<uint32_t>(payload.size()));
  out.append(payload);
  w.Put<uint32_t>(Crc32c(out.data(), out.size()));
  return out;
}

Result<OpenedBlob> OpenBlob(std::string_view blob, BlobKind expected_kind) {
  if (blob.size() < kHeaderSize + kTrailerSize) {
    return Status::Corruption("blob of " + std::to_string(blob.size()) + " bytes is too short");
  }
  if (std::memcmp(blob.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("blob has no CRMS magic");
  }
  BinaryReader r(blob.substr(4));
  uint16_t kind = 0, version = 0;
  uint32_t len = 0;
  CRM_RETURN_NOT_OK(r.Get(&kind));
  CRM_RETURN_NOT_OK(r.Get(&version));
  CRM_RETURN_NOT_OK(r.Get(&len));
  if (kind != static_cast<uint16_t>(expected_kind)) {
    return Status::Corruption("blob kind " + std::to_string(kind) + ", expected " +
                              std::to_string(static_cast<uint16_t>(expected_kind)));
  }
  if (blob.size() != kHeaderSize + len + kTrailerSize) {
    return Status::Corruption("blob length " + std::to_string(blob.size()) +
                              " does not match its header (" + std::to_string(len) + ")");
  }
  uint32_t stored = 0;
  std::memcpy(&stored, blob.data() + kHeaderSize + len, sizeof(stored));
  if (stored != Crc32c(blob.data(), kHeaderSize + len)) {
    return Status::Corruption("blob checksum mismatch");
  }
  return OpenedBlob{version, blob.substr(kHeaderSize, len)};
}

Result<std::string_view> OpenBlobPayload(std::string_view blob, BlobKind expected_kind,
                                         uint16_t version) {
  CRM_ASSIGN_OR_RETURN(OpenedBlob opened, OpenBlob(blob, expected_kind));
  if (opened.version != version) {
    return Status::Corruption("blob kind " + std::to_string(static_cast<uint16_t>(expected_kind)) +
                              " version " + std::to_string(opened.version) +
                              " is not supported (expected " + std::to_string(version) + ")");
  }
  return opened.payload;
}

}  // namespace crmstream
