#include "crmstream/common/binary_io.h"

#include <catch2/catch.hpp>

#include "crmstream/common/hash.h"
#include "support/require_ok.h"

namespace crmstream {
namespace {

TEST_CASE("CRC32C matches the published check value", "[common]") {
  // RFC 3720 appendix B.4: CRC32C("123456789") = 0xE3069283.
  CHECK(Crc32c("123456789", 9) == 0xE3069283u);
  CHECK(Crc32cPortable("123456789", 9) == 0xE3069283u);
  // RFC 3720 B.4: 32 bytes of zeros and of 0xFF.
  const std::string zeros(32, '\0'), ones(32, '\xff');
  CHECK(Crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(Crc32c(ones.data(), ones.size()) == 0x62A8AB43u);
}

TEST_CASE("CRC32C: the fast path equals the table at every length, offset and seed", "[common]") {
  std::string bytes(1031, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (char& b : bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<char>(x);
  }
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n + offset <= bytes.size(); n += (n < 64 ? 1 : 97)) {
      INFO("offset " << offset << " length " << n);
      REQUIRE(Crc32c(bytes.data() + offset, n, 0) == Crc32cPortable(bytes.data() + offset, n, 0));
      REQUIRE(Crc32c(bytes.data() + offset, n, 0xDEADBEEFu) ==
              Crc32cPortable(bytes.data() + offset, n, 0xDEADBEEFu));
    }
  }
}

TEST_CASE("Blob round trip and corruption detection", "[common]") {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<double>(3.25);
  w.Put<int64_t>(-7);
  w.PutBytes("hello");
  std::vector<double> v = {1.0, 2.0, 3.0};
  w.PutArray<double>(v);
  std::string blob = SealBlob(BlobKind::kStandardizer, 3, payload);

  auto opened = OpenBlob(blob, BlobKind::kStandardizer);
  REQUIRE_OK(opened);
  CHECK(opened->version == 3);
  BinaryReader r(opened->payload);
  double d;
  int64_t i;
  std::string s;
  std::vector<double> back;
  REQUIRE_OK(r.Get(&d));
  REQUIRE_OK(r.Get(&i));
  REQUIRE_OK(r.GetBytes(&s));
  REQUIRE_OK(r.GetArray(&back));
  CHECK_OK(r.ExpectEnd());
  CHECK(d == 3.25);
  CHECK(i == -7);
  CHECK(s == "hello");
  CHECK(back == v);

  CHECK(OpenBlob(blob, BlobKind::kMiniBatchKMeans).status().code() == StatusCode::kCorruption);
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK_FALSE(OpenBlob(std::string_view(blob).substr(0, cut), BlobKind::kStandardizer).ok());
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string flipped = blob;
    flipped[pos] ^= 0x10;
    CHECK_FALSE(OpenBlob(flipped, BlobKind::kStandardizer).ok());
  }
  BinaryReader short_reader(std::string_view(payload).substr(0, 5));
  CHECK(short_reader.Get(&d).ok() == false);
}

TEST_CASE("OpenBlobPayload accepts only the expected version", "[common]") {
  const std::string blob = SealBlob(BlobKind::kRollingCorrelation, 2, "payload");
  auto ok = OpenBlobPayload(blob, BlobKind::kRollingCorrelation, 2);
  REQUIRE_OK(ok);
  CHECK(*ok == "payload");
  auto other = OpenBlobPayload(blob, BlobKind::kRollingCorrelation, 1);
  CHECK(other.status().code() == StatusCode::kCorruption);
  CHECK_THAT(other.status().message(), Catch::Contains("version 2 is not supported"));
  CHECK(OpenBlobPayload(blob, BlobKind::kStandardizer, 2).status().code() ==
        StatusCode::kCorruption);
}

TEST_CASE("Hash64 is stable and spreads keys", "[common]") {
  CHECK(Hash64("C000001") == Hash64("C000001"));
  CHECK(Hash64("C000001") != Hash64("C000002"));
  CHECK(Hash64("") != Hash64(std::string_view("\0", 1)));
}

}  // namespace
}  // namespace crmstream
