#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (the `fuzz` preset) and runs each
# for a while (default 30 s) from its seed corpus. Any crash, leak or
# sanitizer report fails the script. Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
[ -f build/fuzz/build.ninja ] || cmake --preset fuzz >/dev/null
targets=(json_decoder_fuzz csv_decoder_fuzz model_decoder_fuzz)
cmake --build build/fuzz -j"$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  corpus_name="${t%_decoder_fuzz}"
  scratch="$(mktemp -d)"
  echo "fuzzing $t for ${seconds}s"
  build/fuzz/tests/fuzz/"$t" -max_total_time="$seconds" -print_final_stats=1 \
    "$scratch" "tests/fuzz/corpus/$corpus_name" 2>&1 | grep -E "^(stat::number_of_executed_units|Done|==|SUMMARY)" || true
  rc=${PIPESTATUS[0]}
  rm -rf "$scratch"
  if [ "$rc" -ne 0 ]; then
    echo "$t failed (exit $rc)"
    exit 1
  fi
done
