// libFuzzer target for what an instance reads from the model-sync topic:
// the statistics blob (scoring::ModelStatistics::Decode) and the records
// (pipeline::ModelSyncBoard::Apply), bytes another process wrote. Neither
// may crash, read out of bounds or hit UB; accepted statistics encode to
// bytes that decode to the same encoding and merge with a copy of
// themselves (or refuse with InvalidArgument).
//
// Input: byte 0 picks the mode: 0 a whole blob, 1 a bare payload the target
// seals (so that mutations get past the checksum), 2 model-sync records
// (each [u8 key length][key][u16 value length][value], applied in order to
// one board, then merged).
//
// CRMSTREAM_WRITE_MODEL_SYNC_SEEDS=DIR: at start-up, writes valid inputs of
// each mode into DIR, the seed corpus.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/pipeline/model_sync.h"
#include "crmstream/scoring/model_statistics.h"

namespace {

using crmstream::BlobKind;
using crmstream::StatusCode;
using crmstream::pipeline::ModelSyncBoard;
using crmstream::pipeline::ModelSyncRecord;
using crmstream::scoring::ModelStatistics;

[[noreturn]] void Fail(const char* what) {
  (void)what;  // visible in the debugger and the crash's stack
  std::abort();
}

void CheckAccepted(const ModelStatistics& s) {
  std::string once;
  s.Encode(&once);
  auto back = ModelStatistics::Decode(once);
  if (!back.ok()) Fail("an accepted blob's encoding is refused");
  std::string twice;
  back->Encode(&twice);
  if (twice != once) Fail("encoding not stable");
  ModelStatistics merged = s;
  const auto st = merged.Merge(*back);
  if (!st.ok() && st.code() != StatusCode::kInvalidArgument) Fail("merge failed otherwise");
  for (int i = 0; i < 3; ++i) (void)merged.MinuteCorrelation(i, (i + 1) % 3);
}

ModelStatistics SeedStatistics() {
  ModelStatistics s;
  s.parts = 1;
  s.minutes = {{60'000, 1.0, 2.0, 3.0}, {120'000, 4.0, 0.0, 1.0}};
  s.covered_from_ms = 60'000;
  s.complete_through_ms = 120'000;
  s.minutes_closed = 2;
  s.value.emplace(crmstream::models::RecursiveLeastSquares::Create({.dimension = 2}).value());
  (void)s.value->Update(std::vector<double>{1.0, 2.0}, 3.0);
  s.segments = {2, {0, 0, 0, 0, 1, 1, 1, 1}, {3.0, 4.0}, {10, 20}};
  return s;
}

void WriteSeeds(const std::string& dir) {
  std::string blob;
  SeedStatistics().Encode(&blob);
  std::ofstream(dir + "/whole", std::ios::binary) << std::string(1, '\0') << blob;
  // The payload: the blob without its envelope (12-byte header, 4-byte crc).
  std::ofstream(dir + "/payload", std::ios::binary)
      << std::string(1, '\1') << blob.substr(12, blob.size() - 16);
  std::vector<ModelSyncRecord> records;
  crmstream::pipeline::EncodeModelSyncRecords("app", "in", 2, 7, blob, 64, &records);
  std::string input(1, '\2');
  for (const ModelSyncRecord& r : records) {
    input += static_cast<char>(r.key.size());
    input += r.key;
    input += static_cast<char>(r.value.size() & 0xff);
    input += static_cast<char>(r.value.size() >> 8);
    input += r.value;
  }
  std::ofstream(dir + "/records", std::ios::binary) << input;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("CRMSTREAM_WRITE_MODEL_SYNC_SEEDS")) WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode == 0 || mode == 1) {
    const std::string blob = mode == 0 ? std::string(rest)
                                       : crmstream::SealBlob(BlobKind::kModelStatistics,
                                                             ModelStatistics::kVersion, rest);
    auto s = ModelStatistics::Decode(blob);
    if (s.ok()) {
      CheckAccepted(*s);
    } else if (s.status().code() != StatusCode::kCorruption) {
      Fail("a refusal other than Corruption");
    }
    return 0;
  }
  ModelSyncBoard board("app");
  while (rest.size() >= 1) {
    const size_t key_size = static_cast<uint8_t>(rest[0]);
    if (rest.size() < 1 + key_size + 2) break;
    const std::string_view key = rest.substr(1, key_size);
    const size_t value_size = static_cast<uint8_t>(rest[1 + key_size]) |
                              (static_cast<size_t>(static_cast<uint8_t>(rest[2 + key_size])) << 8);
    rest.remove_prefix(3 + key_size);
    const std::string_view value = rest.substr(0, value_size);
    rest.remove_prefix(value.size());
    const auto st = board.Apply(key, value);
    if (!st.ok() && st.code() != StatusCode::kCorruption) Fail("Apply refused otherwise");
  }
  auto merged = board.Merge();
  if (merged.ok()) CheckAccepted(*merged);
  return 0;
}
