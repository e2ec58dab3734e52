// libFuzzer target for what the exactly-once restore reads back from Kafka
// and the state store: the output stamp header of every output record
// (DecodeOutputStamp) and a task's checkpointed output positions
// (OutputPositions::Decode). Neither may crash, read out of bounds or hit
// UB. A decoded stamp must encode to exactly the input bytes (the format has
// no slack); accepted positions must encode again to bytes that decode to
// the same positions.
//
// Input: byte 0 even, a stamp: the rest is the header value. Byte 0 odd,
// positions: the next kOutputKindCount bytes give the expected partition
// counts (each modulo 5), bit 1 of byte 0 says whether the rest is a whole
// blob (0) or a bare payload the target seals (1), so that mutations get
// past the checksum.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "crmstream/common/binary_io.h"
#include "crmstream/runtime/stamped_outputs.h"

namespace {

using crmstream::runtime::OutputPartitionCounts;
using crmstream::runtime::OutputPositions;

[[noreturn]] void Fail(const char* what) {
  (void)what;  // visible in the debugger and the crash's stack
  std::abort();
}

// The positions blob's envelope version, read from a real one.
uint16_t PositionsVersion() {
  static const uint16_t version = [] {
    OutputPartitionCounts counts{};
    counts.fill(1);
    auto opened =
        crmstream::OpenBlob(OutputPositions(counts).Encode(), crmstream::BlobKind::kCheckpointMeta);
    if (!opened.ok()) Fail("reference positions do not open");
    return opened->version;
  }();
  return version;
}

void CheckStamp(std::string_view bytes) {
  const auto stamp = crmstream::runtime::DecodeOutputStamp(bytes);
  if (!stamp) return;
  std::string again;
  crmstream::runtime::EncodeOutputStamp(*stamp, &again);
  if (again != bytes) Fail("a decoded stamp does not encode to its bytes");
}

void CheckPositions(uint8_t mode, std::string_view rest) {
  constexpr size_t kKinds = crmstream::pipeline::kOutputKindCount;
  if (rest.size() < kKinds) return;
  OutputPartitionCounts counts{};
  for (size_t k = 0; k < kKinds; ++k) counts[k] = static_cast<uint8_t>(rest[k]) % 5;
  rest.remove_prefix(kKinds);
  std::string sealed;
  if ((mode & 2) != 0) {
    sealed = crmstream::SealBlob(crmstream::BlobKind::kCheckpointMeta, PositionsVersion(), rest);
    rest = sealed;
  }
  const auto positions = OutputPositions::Decode(rest, counts);
  if (!positions.ok()) {
    if (positions.status().code() != crmstream::StatusCode::kCorruption) {
      Fail("a positions error is not Corruption");
    }
    return;
  }
  const std::string again = positions->Encode();
  const auto reread = OutputPositions::Decode(again, counts);
  if (!reread.ok()) Fail("re-encoded positions do not decode");
  for (size_t k = 0; k < kKinds; ++k) {
    for (int32_t q = 0; q < counts[k]; ++q) {
      const auto kind = static_cast<crmstream::pipeline::OutputKind>(k);
      if (reread->get(kind, q) != positions->get(kind, q)) Fail("positions changed");
    }
  }
  if (reread->Encode() != again) Fail("positions round trip changed the bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    CheckStamp(rest);
  } else {
    CheckPositions(data[0], rest);
  }
  return 0;
}
