#!/usr/bin/env bash
# README command 2: installs what the tests need, builds, runs every test.
# The public data sets are read from ../shared/data (or $CRMSTREAM_DATA_DIR);
# tests that need them say SKIPPED where they are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
# The decoders' fuzzers, briefly (scripts/fuzz.sh 600 for a longer run).
scripts/fuzz.sh "${CRMSTREAM_FUZZ_SECONDS:-20}"
ctest --test-dir build/release --output-on-failure -j2 --timeout 900
