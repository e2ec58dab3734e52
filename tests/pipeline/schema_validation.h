// Validates published output records against docs/schemas with Ajv (a real
// JSON Schema validator, from npm, installed into the build tree by CMake:
// tests/pipeline/CMakeLists.txt), through tests/schemas/validate.js.
#pragma once

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "support/test_support.h"

namespace crmstream::pipeline {

inline int RunShell(const std::string& command) {
  const int rc = std::system(command.c_str());
  return rc == -1 ? -1 : WEXITSTATUS(rc);
}

// Runs the validator over `<records_dir>/<topic>.jsonl` for each topic in
// `topics` (space separated); returns its exit code (0: every record valid,
// 1: some invalid). Fails the test when node or the validator is missing.
inline int ValidateRecords(const std::filesystem::path& records_dir, const std::string& topics,
                           bool quiet = false) {
  const std::filesystem::path validator = CRMSTREAM_SCHEMA_VALIDATOR;
  if (RunShell("node --version > /dev/null 2>&1") != 0) {
    FAIL(
        "node is not installed: the output schemas cannot be validated. Install Node.js "
        "(Debian: apt-get install nodejs npm) and rebuild.");
  }
  if (!std::filesystem::exists(validator.parent_path() / "node_modules" / "ajv")) {
    FAIL("the schema validator is not installed in " << validator.parent_path().string()
                                                     << ": rebuild with npm available");
  }
  const std::filesystem::path schemas = testing::SourceDir() / "docs" / "schemas";
  return RunShell("node '" + validator.string() + "' '" + schemas.string() + "' '" +
                  records_dir.string() + "'" + topics + (quiet ? " > /dev/null 2>&1" : " 2>&1"));
}

}  // namespace crmstream::pipeline
