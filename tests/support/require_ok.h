// Catch2 assertions on Status and Result<T> that print the Status message on
// failure (a bare REQUIRE(x.ok()) only says "false").
#pragma once

#include <catch2/catch.hpp>
#include <utility>

#include "crmstream/common/status.h"

namespace crmstream::testing {
// The Status of a Status or of a Result<T>.
inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}
// Another library's status (e.g. rocksdb::Status): itself.
template <typename S>
requires requires(const S& s) {
  s.ok();
  s.ToString();
}
const S& StatusOf(const S& s) { return s; }
}  // namespace crmstream::testing

#define CRM_TEST_CONCAT_INNER(a, b) a##b
#define CRM_TEST_CONCAT(a, b) CRM_TEST_CONCAT_INNER(a, b)

// REQUIRE_OK(expr): expr is a Status, a Result<T> or another library's
// status with ok() and ToString(); fails with its message.
#define REQUIRE_OK(expr)                                                   \
  do {                                                                     \
    const auto& crm_require_ok_value = (expr);                             \
    INFO(::crmstream::testing::StatusOf(crm_require_ok_value).ToString()); \
    REQUIRE(::crmstream::testing::StatusOf(crm_require_ok_value).ok());    \
  } while (false)
#define CHECK_OK(expr)                                                   \
  do {                                                                   \
    const auto& crm_check_ok_value = (expr);                             \
    INFO(::crmstream::testing::StatusOf(crm_check_ok_value).ToString()); \
    CHECK(::crmstream::testing::StatusOf(crm_check_ok_value).ok());      \
  } while (false)

// REQUIRE_OK_AND_ASSIGN(lhs, rexpr): rexpr is a Result<T>; requires it OK and
// moves its value into lhs (a declaration such as `auto x` or an lvalue).
#define REQUIRE_OK_AND_ASSIGN(lhs, rexpr)                \
  auto CRM_TEST_CONCAT(crm_result_, __LINE__) = (rexpr); \
  REQUIRE_OK(CRM_TEST_CONCAT(crm_result_, __LINE__));    \
  lhs = std::move(CRM_TEST_CONCAT(crm_result_, __LINE__)).value()
