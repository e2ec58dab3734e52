#include "crmstream/common/status.h"

#include <catch2/catch.hpp>

#include "support/require_ok.h"

namespace crmstream {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return Status::InvalidArgument("not positive: " + std::to_string(v));
  return v;
}

Status Doubler(int v, int* out) {
  CRM_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  *out = 2 * x;
  return Status::OK();
}

TEST_CASE("Status carries code, message and context", "[common]") {
  Status ok;
  CHECK_OK(ok);
  CHECK(ok.ToString() == "OK");
  Status bad = Status::Corruption("bad crc").WithContext("model.bin");
  CHECK_FALSE(bad.ok());
  CHECK(bad.code() == StatusCode::kCorruption);
  CHECK(bad.ToString() == "Corruption: model.bin: bad crc");
  Status copy = bad;
  CHECK(copy.message() == bad.message());
}

TEST_CASE("Result and the propagation macros", "[common]") {
  int out = 0;
  CHECK_OK(Doubler(21, &out));
  CHECK(out == 42);
  Status st = Doubler(-1, &out);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message() == "not positive: -1");
  Result<int> r = Status::OK();  // misuse is turned into an error, not UB
  CHECK_FALSE(r.ok());
}

}  // namespace
}  // namespace crmstream
