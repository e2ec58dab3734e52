#!/usr/bin/env bash
# scripts/fuzz.sh must fail when a fuzzer fails. Runs it on stand-in
# fuzzers (CRMSTREAM_FUZZ_TARGETS_DIR): all passing must pass; one that
# found a crashing input (libFuzzer's exit status 77 with an ASan report),
# one killed by SIGSEGV and one that exits 1 must each fail it, naming the
# target. Usage: fuzz_script_test.sh path/to/fuzz.sh
set -uo pipefail
fuzz_sh="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

# make_standin DIR TARGET BEHAVIOUR: a fake libFuzzer binary.
make_standin() {
  local file="$1/$2" behaviour="$3"
  {
    echo '#!/usr/bin/env bash'
    echo 'echo "INFO: Seed: 1"'
    case "$behaviour" in
      pass)
        echo 'echo "Done 1000 runs in 1 second(s)"'
        echo 'echo "stat::number_of_executed_units: 1000"'
        echo 'exit 0' ;;
      crash77)
        # What libFuzzer does when an input crashes the target under ASan.
        echo 'echo "==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000011"'
        echo 'echo "SUMMARY: AddressSanitizer: heap-buffer-overflow decoder.cpp:12 in Decode"'
        echo 'echo "artifact_prefix=./; Test unit written to ./crash-da39a3ee"'
        echo 'exit 77' ;;
      segv)
        echo 'kill -SEGV $$' ;;
      exit1)
        echo 'echo "==4242== ERROR: libFuzzer: out-of-memory (used: 2100Mb; exceeds: 2048Mb)"'
        echo 'exit 1' ;;
    esac
  } > "$file"
  chmod +x "$file"
}

# name expected(pass|fail) behaviour-of-json behaviour-of-csv behaviour-of-model
# behaviour-of-the-last-target (engine_metrics_fuzz); the others always pass.
run_case() {
  local name="$1" expected="$2" dir="$work/$1" rc=0
  mkdir -p "$dir"
  make_standin "$dir" json_decoder_fuzz "$3"
  make_standin "$dir" csv_decoder_fuzz "$4"
  make_standin "$dir" model_decoder_fuzz "$5"
  make_standin "$dir" state_decoder_fuzz pass
  make_standin "$dir" output_stamp_fuzz pass
  make_standin "$dir" model_sync_fuzz pass
  make_standin "$dir" engine_metrics_fuzz "$6"
  CRMSTREAM_FUZZ_TARGETS_DIR="$dir" bash "$fuzz_sh" 1 > "$dir/out" 2>&1 || rc=$?
  if [ "$expected" = pass ] && [ "$rc" -ne 0 ]; then
    echo "FAIL: $name: fuzz.sh exited $rc with every stand-in passing"
    sed 's/^/    /' "$dir/out"
    failures=$((failures + 1))
  elif [ "$expected" = fail ] && [ "$rc" -eq 0 ]; then
    echo "FAIL: $name: fuzz.sh exited 0 although a fuzzer failed"
    sed 's/^/    /' "$dir/out"
    failures=$((failures + 1))
  elif [ "$expected" = fail ] && ! grep -q "_fuzz failed (exit" "$dir/out"; then
    echo "FAIL: $name: fuzz.sh failed without naming the failed target"
    sed 's/^/    /' "$dir/out"
    failures=$((failures + 1))
  else
    echo "ok: $name (fuzz.sh exit $rc)"
  fi
}

run_case all-pass pass pass pass pass pass
run_case crashing-input fail pass crash77 pass pass
run_case killed-by-sigsegv fail segv pass pass pass
run_case model-target-fails fail pass pass exit1 pass
run_case last-target-fails fail pass pass pass exit1
exit $((failures > 0))
