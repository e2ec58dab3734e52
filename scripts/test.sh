#!/usr/bin/env bash
# README command 2: installs what the tests need, builds, runs every test.
# The public data sets are read from ../shared/data (or $CRMSTREAM_DATA_DIR).
# A test that cannot run here reports SKIPPED (ctest lists them at the end):
# without the data sets, without kcat or Chromium, without a way to mount a
# tmpfs (root, or user namespaces), or without a real Kafka broker.
# CI (.ci/run) sets CRMSTREAM_REQUIRE_DATA=1, CRMSTREAM_REQUIRE_TMPFS=1 and
# CRMSTREAM_REQUIRE_TEST_TOOLS=1: there each of these is a failure instead.
#
# The Kafka integration tests run against the embedded cluster and against a
# real Apache Kafka that this script starts (scripts/kafka.sh) and stops
# again; those needing it fail, not skip, when it is missing
# (CRMSTREAM_REQUIRE_KAFKA=1). A cluster already named by CRMSTREAM_TEST_KAFKA
# is used as it is; CRMSTREAM_REAL_KAFKA=0 runs without one (they skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
require_tools=OFF
[ "${CRMSTREAM_REQUIRE_TEST_TOOLS:-0}" = 1 ] && require_tools=ON
# Configured every time: the option follows the environment of this run.
cmake --preset release -DCRMSTREAM_REQUIRE_TEST_TOOLS="$require_tools" > /dev/null
scripts/build.sh release
# The decoders' fuzzers, briefly (scripts/fuzz.sh 600 for a longer run).
scripts/fuzz.sh "${CRMSTREAM_FUZZ_SECONDS:-20}"

if [ "${CRMSTREAM_REAL_KAFKA:-1}" = 1 ] && [ -z "${CRMSTREAM_TEST_KAFKA:-}" ]; then
  # Stop it afterwards only if this script started it.
  if ! scripts/kafka.sh status > /dev/null 2>&1; then
    trap 'scripts/kafka.sh stop' EXIT
  fi
  kafka_env="$(scripts/kafka.sh start)"  # fails the script if the broker does not start
  eval "$kafka_env"
  export CRMSTREAM_REQUIRE_KAFKA=1
fi
ctest --test-dir build/release --output-on-failure -j2 --timeout 900
