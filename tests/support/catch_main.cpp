// The test binaries' main: Catch2's session, and the exit status that makes
// ctest report a skipped test as skipped (support/test_support.h).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support/test_support.h"

namespace {

int g_test_cases_run = 0;

struct CountTestCases : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    ++g_test_cases_run;
    TestEventListenerBase::testCaseStarting(info);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(CountTestCases)

int main(int argc, char* argv[]) {
  const int failed = Catch::Session().run(argc, argv);
  if (failed == 0 && g_test_cases_run > 0 &&
      crmstream::testing::SkippedTestCases() == g_test_cases_run) {
    return crmstream::testing::kSkipExitStatus;
  }
  // Never a failure count that reads as "skipped".
  return failed == crmstream::testing::kSkipExitStatus ? 1 : failed;
}
