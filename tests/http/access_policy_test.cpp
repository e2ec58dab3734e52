// The access checks alone: which Host values pass, how tokens are read and
// compared, and how ids travel through percent-encoding.
#include "crmstream/http/access_policy.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "crmstream/http/uri.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::http {
namespace {

TEST_CASE("Host allowlist: loopback names, IP literals, bind address, configured names", "[http]") {
  ServerOptions o;
  o.name = "admin";
  o.allowed_hosts = {"Metrics.Internal:9464"};
  auto policy = AccessPolicy::Create(o);
  REQUIRE_OK(policy);
  for (std::string_view ok : {"localhost", "LOCALHOST:9464", "127.0.0.1:80", "[::1]:9464", "::1",
                              "192.168.1.7", "metrics.internal", "metrics.internal:1"}) {
    INFO(ok);
    CHECK(policy->HostAllowed(ok));
  }
  for (std::string_view bad : {"", "evil.example", "localhost.evil.example",
                               "metrics.internal.evil", "127.0.0.1.nip.io:9464", "[evil]"}) {
    INFO(bad);
    CHECK_FALSE(policy->HostAllowed(bad));
  }
  o.allowed_hosts = {"*"};
  CHECK(AccessPolicy::Create(o)->HostAllowed("anything.example"));
}

TEST_CASE("token: required beyond loopback, read from an owner-only file", "[http]") {
  crmstream::testing::ScratchDir dir;
  ServerOptions o;
  o.name = "dashboard";
  o.bind_address = "not-an-address";
  auto bad_address = AccessPolicy::Create(o);
  REQUIRE_FALSE(bad_address.ok());
  CHECK(bad_address.status().message().find("dashboard.bind_address") != std::string::npos);

  o.bind_address = "::";
  auto no_token = AccessPolicy::Create(o);
  REQUIRE_FALSE(no_token.ok());
  CHECK(no_token.status().message().find("dashboard.auth_token_file") != std::string::npos);

  const auto file = dir.path() / "token";
  std::ofstream(file) << "short\n";
  ::chmod(file.c_str(), 0600);
  o.auth_token_file = file.string();
  auto short_token = AccessPolicy::Create(o);
  REQUIRE_FALSE(short_token.ok());
  CHECK(short_token.status().message().find("at least 16") != std::string::npos);
  CHECK(short_token.status().message().find("short") == std::string::npos);

  std::ofstream(file) << "  0123456789abcdefXYZ \n";
  auto policy = AccessPolicy::Create(o);
  REQUIRE_OK(policy);
  CHECK(policy->token_required());
  CHECK(policy->Authorized("/x", "Bearer 0123456789abcdefXYZ"));
  CHECK(policy->Authorized("/x", "bearer   0123456789abcdefXYZ "));
  CHECK_FALSE(policy->Authorized("/x", "Bearer 0123456789abcdefXY"));
  CHECK_FALSE(policy->Authorized("/x", "Bearer 0123456789abcdefXYZZ"));
  CHECK_FALSE(policy->Authorized("/x", ""));
  CHECK_FALSE(policy->Authorized("/x", "Basic !!!"));
  CHECK_FALSE(policy->Authorized("/x", "Token 0123456789abcdefXYZ"));
}

TEST_CASE("ids survive decoding and encoding as one path segment", "[http]") {
  CHECK(PercentDecode("C%41%2fx") == std::optional<std::string>("CA/x"));
  CHECK(PercentDecode("a+b") == std::optional<std::string>("a+b"));
  CHECK_FALSE(PercentDecode("%zz").has_value());
  CHECK_FALSE(PercentDecode("abc%4").has_value());
  for (std::string id : {"C000042", "o'brien!(x)*", "ümlaut id", "a/b?c#d%"}) {
    const std::string encoded = PercentEncodeSegment(id);
    CHECK(encoded.find_first_of("/?#'!()* ") == std::string::npos);
    CHECK(PercentDecode(encoded) == std::optional<std::string>(id));
  }
  CHECK(TargetPath("/api/x?y=1") == "/api/x");
}

}  // namespace
}  // namespace crmstream::http
