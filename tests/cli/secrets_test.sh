#!/usr/bin/env bash
# Secrets on the command line of `crmstream`: a malformed -X never
# echoes its text, a properties file open to others is refused with the
# fix, and the file's and the environment's properties reach the client
# (checked through librdkafka's own error for an invalid value, which names
# the property but was given by the file or the environment only).
#   secrets_test.sh <crmstream binary> <source dir>
set -uo pipefail
crmstream="$(realpath "$1")"
pipeline="$(realpath "$2")/pipelines/crm.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
check() {  # check <description> <command status: 0 ok>
  if [ "$2" -eq 0 ]; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}

out="$("$crmstream" run -X 'hunter2-secret' --duration 1 2>&1)"; rc=$?
[ "$rc" -ne 0 ]; check "-X without '=' fails" $?
grep -q -- "-X argument 1: expected key=value" <<<"$out"; check "-X error names the argument's position" $?
! grep -q "hunter2" <<<"$out"; check "-X error does not echo the argument" $?

printf 'sasl.password=hunter2-secret\n' > kafka.properties
chmod 644 kafka.properties
out="$("$crmstream" run --kafka-properties kafka.properties --duration 1 2>&1)"; rc=$?
[ "$rc" -ne 0 ]; check "a group/world-readable properties file is refused" $?
grep -q "chmod 600" <<<"$out"; check "the refusal says how to fix it" $?
! grep -q "hunter2" <<<"$out"; check "the refusal does not show the secret" $?

# A value librdkafka rejects, from the file: the engine fails on it, so the
# file was read (0600 accepted).
printf 'bootstrap.servers=127.0.0.1:1\nsocket.timeout.ms=not-a-number\n' > bad.properties
chmod 600 bad.properties
out="$("$crmstream" run -p "$pipeline" --kafka-properties bad.properties --duration 1 2>&1)"; rc=$?
[ "$rc" -ne 0 ]; check "a property from an owner-only file reaches the client" $?
grep -q "socket.timeout.ms" <<<"$out"; check "... and the client names it" $?

out="$(CRMSTREAM_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 CRMSTREAM_KAFKA_SOCKET_TIMEOUT_MS=not-a-number \
  "$crmstream" run -p "$pipeline" --duration 1 2>&1)"; rc=$?
[ "$rc" -ne 0 ]; check "a CRMSTREAM_KAFKA_* variable reaches the client" $?
grep -q "socket.timeout.ms" <<<"$out"; check "... as socket.timeout.ms" $?

# The admin server bound beyond loopback without a token: refused before
# anything starts, naming the field to set.
printf 'admin:\n  bind_address: 0.0.0.0\n' > open.yaml
out="$("$crmstream" run -c open.yaml -p "$pipeline" --duration 1 2>&1)"; rc=$?
[ "$rc" -ne 0 ]; check "an admin server beyond loopback without a token is refused" $?
grep -q "admin.auth_token_file" <<<"$out"; check "... naming admin.auth_token_file" $?
! grep -q "embedded cluster" <<<"$out"; check "... before the embedded cluster starts" $?

[ "$failures" -eq 0 ]
