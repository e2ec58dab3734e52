#include "crmstream/models/categorical_encoder.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

using Mode = CategoricalEncoderOptions::Mode;

TEST_CASE("Vocabulary encoder indexes by first appearance and overflows", "[models]") {
  auto enc = CategoricalEncoder::Create({.mode = Mode::kVocabulary, .max_categories = 3}).value();
  CHECK(enc.Width() == 4);
  CHECK(enc.Encode("Month-to-month") == 0);
  CHECK(enc.Encode("One year") == 1);
  CHECK(enc.Encode("Month-to-month") == 0);
  CHECK(enc.Encode("Two year") == 2);
  CHECK(enc.Encode("Ten year") == 3);  // overflow
  CHECK(enc.Encode("Eleven year") == 3);
  CHECK(enc.overflow_count() == 2);
  CHECK(enc.Lookup("One year") == 1);
  CHECK(enc.Lookup("never seen") == enc.OverflowIndex());
  CHECK(enc.categories().size() == 3);
}

TEST_CASE("Hashing encoder is stateless and stable", "[models]") {
  auto enc = CategoricalEncoder::Create({.mode = Mode::kHashing, .buckets = 16}).value();
  CHECK(enc.Width() == 16);
  std::set<uint32_t> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string v = "city-" + std::to_string(i);
    const uint32_t idx = enc.Encode(v);
    CHECK(idx == Hash64(v) % 16);
    CHECK(idx == enc.Lookup(v));
    seen.insert(idx);
  }
  CHECK(seen.size() == 16);  // 200 values fill every bucket
}

TEST_CASE("Vocabulary merge keeps this side's indices and maps the other's", "[models]") {
  auto a = CategoricalEncoder::Create({.max_categories = 4}).value();
  auto b = CategoricalEncoder::Create({.max_categories = 4}).value();
  (void)a.Encode("DSL");
  (void)a.Encode("Fiber optic");
  (void)b.Encode("No");
  (void)b.Encode("DSL");
  (void)b.Encode("Cable");
  (void)b.Encode("Satellite");
  std::vector<uint32_t> mapping;
  REQUIRE_OK(a.Merge(b, &mapping));
  CHECK(a.Lookup("DSL") == 0);
  CHECK(a.Lookup("Fiber optic") == 1);
  CHECK(a.Lookup("No") == 2);
  CHECK(a.Lookup("Cable") == 3);
  CHECK(a.Lookup("Satellite") == a.OverflowIndex());  // no room left
  REQUIRE(mapping.size() == 5);                       // b's 4 categories + its overflow
  CHECK(mapping == std::vector<uint32_t>{2, 0, 3, 4, 4});
  auto hashed = CategoricalEncoder::Create({.mode = Mode::kHashing}).value();
  CHECK(a.Merge(hashed).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("CategoricalEncoder blob round-trips and rejects damage", "[models]") {
  auto enc = CategoricalEncoder::Create({.max_categories = 8}).value();
  for (const char* v : {"Electronic check", "Mailed check", "Bank transfer (automatic)", ""}) {
    (void)enc.Encode(v);
  }
  const std::string blob = enc.Serialize();
  auto back = CategoricalEncoder::Deserialize(blob);
  REQUIRE_OK(back);
  CHECK(back->Serialize() == blob);
  CHECK(back->Lookup("Mailed check") == 1);
  CHECK(back->Lookup("") == 3);
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK(CategoricalEncoder::Deserialize(std::string_view(blob).substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x44);
    CHECK_FALSE(CategoricalEncoder::Deserialize(damaged).ok());
  }
  CHECK(CategoricalEncoder::Create({.max_categories = 0}).status().code() ==
        StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crmstream::models
