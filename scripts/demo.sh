#!/usr/bin/env bash
# README command 1, the main job: installs what it needs, builds, then runs
# the embedded Kafka cluster, the generator, the engine and a reader of the
# output topics in one process, with a live status line. Ctrl-C stops it.
# Extra arguments go to `crmstream run` (e.g. --rate 50000 --duration 30).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
exec build/release/src/cli/crmstream run --demo "$@"
