#!/usr/bin/env bash
# `crmstream generate` and `crmstream run` through the real broker's SASL_SSL
# listener (TLS + SCRAM-SHA-512), configured only with -X pass-through
# settings, as a user would; the topics are then read back through the same
# listener by kcat, an independent client. A wrong password must stop `run`
# at start-up with the broker's reason.
#
#   tests/kafka/cli_sasl_test.sh <crmstream binary> <source dir>
#
# Needs the settings scripts/kafka.sh prints (CRMSTREAM_TEST_KAFKA_SASL, ...);
# without them it exits 77 (ctest: skipped), or fails under
# CRMSTREAM_REQUIRE_KAFKA=1.
set -euo pipefail
crmstream="$1"
source_dir="$2"

if [ -z "${CRMSTREAM_TEST_KAFKA_SASL:-}" ] || [ -z "${CRMSTREAM_TEST_KAFKA_CA:-}" ]; then
  reason="no real Kafka SASL_SSL listener: start one with \`eval \"\$(scripts/kafka.sh start)\"\`"
  if [ "${CRMSTREAM_REQUIRE_KAFKA:-}" = 1 ]; then
    echo "FAILED: $reason (CRMSTREAM_REQUIRE_KAFKA=1)"
    exit 1
  fi
  echo "SKIPPED: $reason"
  exit 77
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Names of their own: the cluster outlives this test and may serve others.
suffix="$$-$(date +%s%N)"
cat > "$work/crmstream.yaml" << EOF
kafka:
  group_id: sasl-engine-$suffix
inputs:
  - name: sasl.interactions-$suffix
    partitions: 3
outputs:
  customer_scores: {name: sasl.customer-scores-$suffix, partitions: 3}
  churn_alerts: {name: sasl.churn-alerts-$suffix, partitions: 1}
  segments: {name: sasl.segments-$suffix, partitions: 1}
  anomalies: {name: sasl.anomalies-$suffix, partitions: 1}
  correlations: {name: sasl.correlations-$suffix, partitions: 1}
  dead_letter: {name: sasl.dead-letter-$suffix, partitions: 1}
state_dir: $work/state
pipeline: $source_dir/pipelines/crm.yaml
metrics_port: 0
EOF
sasl=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512
  -X "sasl.username=$CRMSTREAM_TEST_KAFKA_SASL_USERNAME"
  -X "sasl.password=$CRMSTREAM_TEST_KAFKA_SASL_PASSWORD"
  -X "ssl.ca.location=$CRMSTREAM_TEST_KAFKA_CA")
events=4000

fail() {
  echo "FAILED: $*"
  exit 1
}

# Records on a topic, read to its end through the SASL_SSL listener.
count_records() {
  timeout 60 kcat -C -b "$CRMSTREAM_TEST_KAFKA_SASL" "${sasl[@]}" -t "$1" -o beginning -e -q \
    -f 'x\n' | wc -l
}

timeout 120 "$crmstream" generate -c "$work/crmstream.yaml" -b "$CRMSTREAM_TEST_KAFKA_SASL" \
  "${sasl[@]}" -t "sasl.interactions-$suffix" -n "$events" --rate 0 --malformed-rate 0.02 \
  > "$work/generate.log" 2>&1 || {
  cat "$work/generate.log"
  fail "crmstream generate over SASL_SSL"
}
input="$(count_records "sasl.interactions-$suffix")"
[ "$input" -eq "$events" ] || fail "the input topic holds $input records, not $events"

timeout 120 "$crmstream" run -c "$work/crmstream.yaml" -b "$CRMSTREAM_TEST_KAFKA_SASL" \
  "${sasl[@]}" --until-caught-up > "$work/run.log" 2>&1 || {
  tail -n 30 "$work/run.log"
  fail "crmstream run over SASL_SSL"
}
summary="$(grep '^stopped:' "$work/run.log")" || fail "no summary line from crmstream run"
echo "$summary"
[[ "$summary" =~ ^stopped:\ ([0-9]+)\ records\ in,\ [0-9]+\ duplicates,\ ([0-9]+)\ dead\ letters,\ ([0-9]+)\ outputs ]] ||
  fail "unexpected summary: $summary"
records_in="${BASH_REMATCH[1]}"
dead_letters="${BASH_REMATCH[2]}"
[ "$records_in" -eq "$events" ] || fail "the engine read $records_in records, not $events"
[ "$dead_letters" -gt 0 ] || fail "no dead letters from 2% malformed records"
# What the engine says it wrote is on the topics, read by another client.
on_topic="$(count_records "sasl.dead-letter-$suffix")"
[ "$on_topic" -eq "$dead_letters" ] || fail "$on_topic dead letters on the topic, the engine reported $dead_letters"
scores="$(count_records "sasl.customer-scores-$suffix")"
[ "$scores" -gt 0 ] || fail "no customer-scores records on the topic"
echo "over SASL_SSL: $input events in, $on_topic dead letters and $scores customer-scores records read back"

# A wrong password: start-up fails with the broker's reason, within seconds.
wrong=("${sasl[@]}")
wrong[7]="sasl.password=not-$CRMSTREAM_TEST_KAFKA_SASL_PASSWORD"
if timeout 60 "$crmstream" run -c "$work/crmstream.yaml" -b "$CRMSTREAM_TEST_KAFKA_SASL" \
  "${wrong[@]}" --until-caught-up > "$work/wrong.log" 2>&1; then
  fail "crmstream run accepted a wrong SASL password"
fi
grep -q "^crmstream run: InvalidArgument: .*Authentication failed" "$work/wrong.log" || {
  tail -n 5 "$work/wrong.log"
  fail "no clear authentication error from crmstream run"
}
if grep -q -- "not-$CRMSTREAM_TEST_KAFKA_SASL_PASSWORD" "$work/wrong.log"; then
  fail "the password appears in the output"
fi
echo "wrong password: $(grep '^crmstream run:' "$work/wrong.log" | cut -c1-160)..."
