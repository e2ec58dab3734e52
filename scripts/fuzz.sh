#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (the `fuzz` preset) and runs each
# for a while (default 30 s) from its seed corpus. Any crash, leak, timeout
# or sanitizer report (a fuzzer that exits non-zero or dies by a signal)
# fails the script. Usage: scripts/fuzz.sh [seconds]
#
# CRMSTREAM_FUZZ_TARGETS_DIR=DIR runs the targets found in DIR instead of
# building them (tests/scripts/fuzz_script_test.sh gives it stand-ins).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
targets=(json_decoder_fuzz csv_decoder_fuzz model_decoder_fuzz state_decoder_fuzz
         output_stamp_fuzz model_sync_fuzz engine_metrics_fuzz)
targets_dir="${CRMSTREAM_FUZZ_TARGETS_DIR:-}"
if [ -z "$targets_dir" ]; then
  [ -f build/fuzz/build.ninja ] || cmake --preset fuzz >/dev/null
  cmake --build build/fuzz -j"$(nproc)" --target "${targets[@]}"
  targets_dir=build/fuzz/tests/fuzz
fi
for t in "${targets[@]}"; do
  # tests/fuzz/corpus/<name>: json_decoder_fuzz -> json, output_stamp_fuzz -> output_stamp.
  corpus_name="${t%_fuzz}"
  corpus_name="${corpus_name%_decoder}"
  scratch="$(mktemp -d)"
  echo "fuzzing $t for ${seconds}s"
  # The fuzzer's own exit status, taken before anything else runs: a
  # pipeline into grep would report grep's.
  rc=0
  "$targets_dir/$t" -max_total_time="$seconds" -print_final_stats=1 \
    "$scratch" "tests/fuzz/corpus/$corpus_name" > "$scratch.log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|Done|==|SUMMARY)" "$scratch.log" || true
  if [ "$rc" -ne 0 ]; then
    echo "$t failed (exit $rc); the end of its output:"
    tail -n 40 "$scratch.log"
    rm -rf "$scratch" "$scratch.log"
    exit 1
  fi
  rm -rf "$scratch" "$scratch.log"
done
