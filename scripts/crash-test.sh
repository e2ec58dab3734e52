#!/usr/bin/env bash
# The kill -9 crash harness (docs/crash-test.md).
#
# Runs the same generated input through the engine twice, against one broker
# (--broker embedded: `crmstream broker`, a separate process that is never
# killed; --broker real: a running Apache Kafka cluster, with topic and group
# names unique to this harness run) holding the input topic once and each
# run's own output topics, consumer group and state directory:
#   reference  one crash-free engine run to the end of the input;
#   crash      an engine killed --kills times (seeded, printed), restarted
#              after every kill, then run to the end. Of every three starts,
#              one gets SIGKILL at a random moment of its processing, one
#              SIGKILL as soon as its state restore begins, and one dies inside
#              a checkpoint at a crash point (CRMSTREAM_CRASH_AT, each step of
#              a checkpoint in turn). Each kill is reported with the phase it
#              landed in (restore, processing, checkpoint, idle, group join).
# With --instances N the crash run is a consumer group of N engines with
# their own state directories, killed, restarted, removed and added at
# seeded moments, then one engine with an empty store restores every
# partition from the changelog and runs to the end (the group's merged
# state); the times from each change to the group processing again are
# reported.
# Then it compares the two runs: the state dumps (families features, models,
# offsets, dedup) and, per output topic, the multiset of output records read
# with isolation.level=read_committed. Identical, with a reference that holds
# state and outputs and (from 3 kills) kills in the restore, the processing
# and a checkpoint: exit 0; otherwise it prints what is missing or the first
# differences and exits 1.
#
# Both runs read the very same input records, broker timestamps included:
# exactly-once processing takes "now" and its flush points from the records'
# broker timestamps, so two brokers fed the same events at different moments
# would give different (each correct) results. The whole input is produced
# and acknowledged BEFORE any engine starts, so an idle partition never
# forces a block closed before the end of the input.
#
# Exit status: 0 identical; 1 differences, or an engine run that failed or
# did not finish within --run-timeout; 2 the harness could not do its job
# (setup error, a time limit of its own steps, a broker that dropped records);
# 77 skipped (--require-exactly-once and no exactly-once contract yet, or
# --broker real with no cluster named and CRMSTREAM_REQUIRE_KAFKA unset).
set -euo pipefail
export LC_ALL=C

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
Usage: scripts/crash-test.sh [options]

Kills the engine at random moments (SIGKILL) and inside checkpoints (crash
points), restarts it each time, and compares its final state and
read_committed outputs with a crash-free run of the same input. From 3 kills
on, kills must have landed in the restore, the processing and a checkpoint.

  --broker B           embedded (default: a \`crmstream broker\` process of the harness's own)
                       or real (a running Kafka cluster: --bootstrap or \$CRMSTREAM_TEST_KAFKA;
                       skipped, exit 77, without one unless CRMSTREAM_REQUIRE_KAFKA=1)
  --bootstrap H:P      the real cluster's bootstrap servers (default \$CRMSTREAM_TEST_KAFKA)
  --kills N            kills in the crash run (default 20; 0: two crash-free runs)
  --instances N        engines in the crash run's consumer group (default 1). Above 1 the crash
                       run is N instances with their own state directories, and --kills counts
                       chaos events: SIGKILL, restart, SIGTERM (leaves for good) and a new instance
                       with an empty store, in turn; the times from each to the group processing
                       again are reported; at the end one engine with an empty store restores
                       every partition from the changelog and runs to the end (docs/crash-test.md)
  --events N           generated input events (default 100000)
  --customers N        customers of the generated world (default 2000)
  --seed S             seed of the input and of the kill delays (default: from the clock; printed)
  --crmstream PATH     the crmstream binary (default build/release/src/cli/crmstream)
  --workdir DIR        where brokers, state, logs and collected outputs go
                       (default: a new directory under \${TMPDIR:-/tmp})
  --keep               keep the work directory also when the runs are identical
                       (it is always kept after a difference or an error)
  --min-delay SEC      shortest delay from the anchor to a kill (default 0.2)
  --max-delay SEC      longest delay from the anchor to a kill (default 3)
  --kill-anchor A      what the kill delay counts from: assigned (default: the engine's
                       "assigned N partition(s)" log line, so kills land in processing
                       rather than in the group join; the restore-aimed kills come as
                       soon as "restoring state of N partition(s)" is logged) or start
  --session-timeout-ms N
                       the engine consumer's session.timeout.ms (default 4000, 6000 with
                       --broker real: a real broker's group.min.session.timeout.ms): a restarted
                       engine waits this long for its killed predecessor to leave the group
  --mask-field NAME    a JSON field of the output records that holds wall-clock time and is
                       masked before comparing (repeatable; default: received_at_ms)
  --partitions N       partitions of the input and of each output topic (default 6;
                       the embedded broker keeps at most 5 MiB per partition)
  --snapshot-minutes N the pipeline's centroid and correlation snapshot period in event
                       time (default 60; pipelines/crm.yaml has 15): the snapshots share one
                       key, so one partition, which must stay under the broker's 5 MiB
  --malformed-rate F   fraction of malformed input records (default 0.001)
  --duplicate-rate F   fraction of re-sent duplicate input records (default 0.001)
  --guarantee G        exactly_once | at_least_once | auto (default auto: exactly_once
                       when the engine's configuration knows processing.guarantee)
  --require-exactly-once
                       exit 77 (skipped) when the engine has no exactly-once contract yet
                       (no processing.guarantee in its configuration or no run --until-caught-up)
  --run-timeout SEC    longest time one engine run to the end of the input may take (default 600)
  --abort-every N      with Kafka transactions: every crash-run engine aborts every Nth commit
                       (the fault point transaction.abortable:every:N, as a rebalance's
                       refused offsets do) and rewinds; the state and outputs must still match
  --memory-cap-mb N    state.memory_cap_mb of both runs (default 256); a small cap keeps fewer
                       customers per partition in memory than the input has: evictions, loads
                       and checkpoints forced by the cache's pressure
  -h, --help           this message

Example (the long form): scripts/crash-test.sh --kills 25 --events 400000 --customers 2000 \
  --partitions 24 --min-delay 0.05 --max-delay 1.5 --snapshot-minutes 240 --seed 777
A consumer group on a real broker: scripts/crash-test.sh --broker real --instances 3 --partitions 12 \
  --kills 7 --events 300000 --customers 1000 --min-delay 0.2 --max-delay 1.0 --snapshot-minutes 240
The long form on a real broker: eval "\$(scripts/kafka.sh start)"; scripts/crash-test.sh --broker real \
  --kills 25 --events 200000 --customers 2000 --partitions 12 --min-delay 0.05 --max-delay 1.5 \
  --snapshot-minutes 240 --seed 777
EOF
}

kills=20
instances=1
events=100000
customers=2000
seed=""
crmstream="$repo_root/build/release/src/cli/crmstream"
workdir=""
keep=0
min_delay=0.2
max_delay=3
partitions=6
malformed_rate=0.001
duplicate_rate=0.001
guarantee=auto
require_eo=0
run_timeout=600
kill_anchor=assigned
session_timeout_ms=""
broker_kind=embedded
bootstrap="${CRMSTREAM_TEST_KAFKA:-}"
snapshot_minutes=60
memory_cap_mb=256
abort_every=0
mask_fields=()

need_value() { [ $# -ge 2 ] || { echo "crash-test: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --broker) need_value "$@"; broker_kind="$2"; shift 2 ;;
    --bootstrap) need_value "$@"; bootstrap="$2"; shift 2 ;;
    --kills) need_value "$@"; kills="$2"; shift 2 ;;
    --instances) need_value "$@"; instances="$2"; shift 2 ;;
    --events) need_value "$@"; events="$2"; shift 2 ;;
    --customers) need_value "$@"; customers="$2"; shift 2 ;;
    --seed) need_value "$@"; seed="$2"; shift 2 ;;
    --crmstream) need_value "$@"; crmstream="$2"; shift 2 ;;
    --workdir) need_value "$@"; workdir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --min-delay) need_value "$@"; min_delay="$2"; shift 2 ;;
    --max-delay) need_value "$@"; max_delay="$2"; shift 2 ;;
    --partitions) need_value "$@"; partitions="$2"; shift 2 ;;
    --malformed-rate) need_value "$@"; malformed_rate="$2"; shift 2 ;;
    --duplicate-rate) need_value "$@"; duplicate_rate="$2"; shift 2 ;;
    --guarantee) need_value "$@"; guarantee="$2"; shift 2 ;;
    --require-exactly-once) require_eo=1; shift ;;
    --run-timeout) need_value "$@"; run_timeout="$2"; shift 2 ;;
    --kill-anchor) need_value "$@"; kill_anchor="$2"; shift 2 ;;
    --session-timeout-ms) need_value "$@"; session_timeout_ms="$2"; shift 2 ;;
    --snapshot-minutes) need_value "$@"; snapshot_minutes="$2"; shift 2 ;;
    --memory-cap-mb) need_value "$@"; memory_cap_mb="$2"; shift 2 ;;
    --abort-every) need_value "$@"; abort_every="$2"; shift 2 ;;
    --mask-field) need_value "$@"; mask_fields+=("$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "crash-test: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$broker_kind" in embedded | real) ;; *)
  echo "crash-test: --broker must be embedded or real" >&2; exit 2 ;;
esac
# A real broker refuses a session.timeout.ms below its
# group.min.session.timeout.ms (6000 by default): the JoinGroup fails.
[ -z "$session_timeout_ms" ] && { [ "$broker_kind" = real ] && session_timeout_ms=6000 || session_timeout_ms=4000; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_num() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for v in kills instances events customers partitions run_timeout session_timeout_ms snapshot_minutes abort_every; do
  is_uint "${!v}" || { echo "crash-test: --${v//_/-} must be a whole number" >&2; exit 2; }
done
for v in min_delay max_delay malformed_rate duplicate_rate; do
  is_num "${!v}" || { echo "crash-test: --${v//_/-} must be a number" >&2; exit 2; }
done
[ -z "$seed" ] && seed=$(($(date +%s) % 1000000))
is_uint "$seed" || { echo "crash-test: --seed must be a whole number" >&2; exit 2; }
case "$kill_anchor" in assigned | start) ;; *)
  echo "crash-test: --kill-anchor must be assigned or start" >&2; exit 2 ;;
esac
for f in "${mask_fields[@]}"; do
  [[ "$f" =~ ^[A-Za-z0-9_]+$ ]] || { echo "crash-test: --mask-field takes a plain field name" >&2; exit 2; }
done
case "$guarantee" in exactly_once | at_least_once | auto) ;; *)
  echo "crash-test: --guarantee must be exactly_once, at_least_once or auto" >&2; exit 2 ;;
esac
[ "$events" -gt 0 ] || { echo "crash-test: --events must be positive" >&2; exit 2; }
[ "$abort_every" -eq 0 ] || [ "$guarantee" != at_least_once ] ||
  { echo "crash-test: --abort-every needs exactly_once (Kafka transactions)" >&2; exit 2; }
[ "$partitions" -gt 0 ] || { echo "crash-test: --partitions must be positive" >&2; exit 2; }
[ "$instances" -gt 0 ] || { echo "crash-test: --instances must be positive" >&2; exit 2; }
for tool in kcat timeout awk sed sort comm cmp; do
  command -v "$tool" > /dev/null || { echo "crash-test: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x "$crmstream" ] || { echo "crash-test: no crmstream binary at $crmstream (--crmstream PATH)" >&2; exit 2; }
crmstream="$(cd "$(dirname "$crmstream")" && pwd)/$(basename "$crmstream")"

# A real cluster: named, and answering, before anything else is set up.
if [ "$broker_kind" = real ]; then
  if [ -z "$bootstrap" ]; then
    if [ "${CRMSTREAM_REQUIRE_KAFKA:-0}" = 1 ]; then
      echo "crash-test: --broker real needs --bootstrap or CRMSTREAM_TEST_KAFKA (CRMSTREAM_REQUIRE_KAFKA=1)" >&2
      exit 2
    fi
    echo "crash-test: SKIPPED: --broker real and no cluster (--bootstrap, CRMSTREAM_TEST_KAFKA; scripts/kafka.sh start)"
    exit 77
  fi
  [[ "$bootstrap" =~ ^[A-Za-z0-9._:,-]+$ ]] || { echo "crash-test: --bootstrap takes host:port[,host:port...]" >&2; exit 2; }
  timeout 30 kcat -b "$bootstrap" -L -m 10 -t __consumer_offsets > /dev/null 2>&1 ||
    { echo "crash-test: the Kafka cluster at $bootstrap does not answer (kcat -L)" >&2; exit 2; }
fi

created_workdir=0
if [ -z "$workdir" ]; then
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/crmstream-crash.XXXXXX")"
  created_workdir=1
else
  mkdir -p "$workdir"
  workdir="$(cd "$workdir" && pwd)"
  rm -rf "$workdir/reference" "$workdir/crash" "$workdir/compare" "$workdir/broker" "$workdir"/setup-*
fi

log() { printf '[crash-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------- processes
# Every process this script starts in the background is listed here and
# ended on every exit path (normal end, error, Ctrl-C, SIGTERM).
started_pids=()
finished=0

# A pid leaves the list once reaped, so that no later process that reuses
# the number is ever signalled.
forget_pid() {
  local pid="$1" p kept=()
  for p in "${started_pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  started_pids=("${kept[@]}")
}

stop_pid() {  # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid="$1" i
  if ! kill -0 "$pid" 2> /dev/null; then
    wait "$pid" 2> /dev/null || true
    forget_pid "$pid"
    return 0
  fi
  kill -TERM "$pid" 2> /dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2> /dev/null; then kill -KILL "$pid" 2> /dev/null || true; fi
  wait "$pid" 2> /dev/null || true
  forget_pid "$pid"
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${started_pids[@]}"; do stop_pid "$pid"; done
  if { [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; } && [ "$keep" -eq 0 ] && [ "$finished" -eq 1 ]; then
    if [ "$created_workdir" -eq 1 ]; then rm -rf "$workdir"; else rm -rf "$workdir"/{reference,crash,compare,pipeline.yaml,setup-reference,setup-crash}; fi
  elif [ -d "$workdir" ]; then
    log "work directory kept: $workdir"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 2' INT
trap 'log "terminated"; exit 2' TERM

fail_harness() { log "ERROR: $*"; exit 2; }

# Waits for a background process to end, at most $2 seconds; sets exit_rc
# to its exit status, or to 124 when it is still running. (Not a command
# substitution: a subshell cannot wait for this shell's children.)
exit_rc=0
wait_exit() {
  local pid="$1" limit="$2" waited=0
  exit_rc=0
  while kill -0 "$pid" 2> /dev/null; do
    if [ "$waited" -ge $((limit * 10)) ]; then
      exit_rc=124
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" || exit_rc=$?
  forget_pid "$pid"
}

# ---------------------------------------------------------------- configuration
have_until_caught_up=0
run_help="$("$crmstream" run --help 2> /dev/null || true)"
case "$run_help" in *--until-caught-up*) have_until_caught_up=1 ;; esac

# Each run writes its own copy of the output topics: "<run>.<topic>". A real
# cluster outlives harness runs: there every topic and group name also
# carries a prefix unique to this harness run.
output_topics=(crm.customer-scores crm.churn-alerts crm.segments crm.anomalies crm.correlations crm.dead-letter
  crm.associations crm.recommendations)
name_prefix=""
group_suffix=""
if [ "$broker_kind" = real ]; then
  run_id="$seed-$(date +%s)-$$"
  name_prefix="crash-test.$run_id."
  group_suffix="-$run_id"
fi
input_topic="${name_prefix}crm.interactions"

# The configuration names no broker: every command gets it by --broker-file
# (written by `crmstream broker`, or by the harness for a real cluster).
write_config() {  # file run-name state-dir with-processing-section(0/1)
  local file="$1" name="$2" state_dir="$3" with_processing="$4" o="${name_prefix}$2.crm"
  {
    echo "# Engine configuration of the crash harness's $name run (generated)."
    echo "kafka:"
    echo "  group_id: crmstream-crash-$name-$seed$group_suffix"
    echo "  embedded_brokers: 3"
    echo "inputs:"
    echo "  - {name: $input_topic, partitions: $partitions}"
    echo "outputs:"
    echo "  customer_scores: {name: $o.customer-scores, partitions: $partitions}"
    echo "  churn_alerts: {name: $o.churn-alerts, partitions: $partitions}"
    echo "  segments: {name: $o.segments, partitions: $partitions}"
    echo "  anomalies: {name: $o.anomalies, partitions: $partitions}"
    echo "  correlations: {name: $o.correlations, partitions: $partitions}"
    echo "  dead_letter: {name: $o.dead-letter, partitions: $partitions}"
    echo "  associations: {name: $o.associations, partitions: $partitions}"
    echo "  recommendations: {name: $o.recommendations, partitions: $partitions}"
    echo "state_dir: $state_dir"
    echo "pipeline: $workdir/pipeline.yaml"
    echo "metrics_port: 0"
    echo "commit_interval_ms: 200"
    echo "status_interval_ms: 500"
    if [ "$with_processing" -eq 1 ]; then
      echo "processing:"
      echo "  guarantee: $effective_guarantee"
      echo "state:"
      echo "  memory_cap_mb: $memory_cap_mb"
      echo "  sync: false"
    fi
  } > "$file"
}

# The product's pipeline with the snapshot cadence of --snapshot-minutes.
pipeline_src="$repo_root/pipelines/crm.yaml"
[ -f "$pipeline_src" ] || fail_harness "no pipeline at $pipeline_src"
sed -E "s/^( *)(centroid_interval_minutes|correlation_interval_minutes):( *)[0-9]+/\1\2:\3$snapshot_minutes/" \
  "$pipeline_src" > "$workdir/pipeline.yaml"
[ "$(grep -cE "^ *(centroid|correlation)_interval_minutes: *$snapshot_minutes\b" "$workdir/pipeline.yaml")" -eq 2 ] ||
  fail_harness "could not set the snapshot intervals in a copy of $pipeline_src"

# Which guarantee the runs use. `auto` asks the engine's configuration
# reader (through `crmstream broker`, which loads the same file and exits at
# once on an unknown field) whether it knows processing.guarantee.
effective_guarantee=exactly_once
[ "$guarantee" = at_least_once ] && effective_guarantee=at_least_once
# at_least_once stamps dead letters with the wall clock (received_at_ms);
# exactly_once with the record's broker timestamp, which both runs share.
if [ ${#mask_fields[@]} -eq 0 ] && [ "$effective_guarantee" = at_least_once ]; then
  mask_fields=(received_at_ms)
fi
with_processing=1
probe_config() {
  local dir="$workdir/probe"
  mkdir -p "$dir"
  write_config "$dir/engine.yaml" probe "$dir/state" 1
  "$crmstream" broker --config "$dir/engine.yaml" --state-dir "$dir/broker" --brokers 1 \
    > "$dir/broker.log" 2>&1 &
  local pid=$!
  started_pids+=("$pid")
  local i
  for ((i = 0; i < 300; i++)); do
    [ -s "$dir/broker/broker.addr" ] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  local accepted=0
  [ -s "$dir/broker/broker.addr" ] && accepted=1
  stop_pid "$pid"
  if [ "$accepted" -eq 0 ] && ! grep -q "unknown field" "$dir/broker.log"; then
    cat "$dir/broker.log" >&2
    fail_harness "the embedded broker did not start (log above)"
  fi
  rm -rf "$dir"
  [ "$accepted" -eq 1 ]
}
if [ "$require_eo" -eq 1 ] && [ "$have_until_caught_up" -eq 0 ]; then
  log "SKIPPED: this crmstream's run command has no --until-caught-up (no exactly-once contract yet)"
  finished=1
  exit 77
fi
if probe_config; then
  :
elif [ "$guarantee" = exactly_once ] || [ "$require_eo" -eq 1 ]; then
  if [ "$require_eo" -eq 1 ]; then
    log "SKIPPED: this crmstream's configuration has no processing.guarantee (no exactly-once mode)"
    finished=1
    exit 77
  fi
  fail_harness "this crmstream's configuration has no processing.guarantee (no exactly-once mode)"
else
  with_processing=0
  effective_guarantee="the engine's only mode (no processing.guarantee in its configuration)"
fi

# The kill delays: seeded, so a failing run is reproduced by its seed.
max_attempts=$((kills * 3 + 5))
mapfile -t delays < <(awk -v seed="$seed" -v n="$max_attempts" -v lo="$min_delay" -v hi="$max_delay" \
  'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%.2f\n", lo + rand() * (hi - lo) }')

log "seed $seed: $events events, $customers customers, $partitions partitions per topic, $kills kills"
log "crmstream: $crmstream"
log "guarantee: $effective_guarantee"
log "kills: ${min_delay}-${max_delay} s after the engine's $( [ "$kill_anchor" = assigned ] && echo "partition assignment" || echo start); masked output fields: ${mask_fields[*]}"
if [ "$have_until_caught_up" -eq 1 ]; then
  log "end of a run: crmstream run --until-caught-up"
else
  log "end of a run: crmstream run has no --until-caught-up; the harness watches the status" \
    "line until the lag is 0 and the counts stand still for 2 s, then stops it with SIGTERM"
fi
log "work directory: $workdir"
mask_args=""
for f in "${mask_fields[@]}"; do mask_args+=" --mask-field $f"; done
log "reproduce with: $0 --broker $broker_kind --seed $seed --instances $instances --kills $kills --events $events --customers $customers" \
  "--partitions $partitions --min-delay $min_delay --max-delay $max_delay --kill-anchor $kill_anchor" \
  "--session-timeout-ms $session_timeout_ms --snapshot-minutes $snapshot_minutes --malformed-rate $malformed_rate" \
  "--duplicate-rate $duplicate_rate$mask_args --guarantee $guarantee --crmstream $crmstream"

# ---------------------------------------------------------------- one run
run_dir=""
broker_pid=""
broker_addr=""
engine_failures=0

broker_dir=""
start_broker() {  # the one broker of both runs, with both runs' topics
  broker_dir="$workdir/broker"
  if [ "$broker_kind" = real ]; then
    # A cluster of its own that outlives the harness: nothing to start or
    # stop, only its address for --broker-file.
    mkdir -p "$broker_dir"
    echo "$bootstrap" > "$broker_dir/broker.addr"
    broker_addr="$bootstrap"
    log "real Kafka cluster at $broker_addr; topics and groups of this harness run: ${name_prefix}*, *$group_suffix"
    return 0
  fi
  "$crmstream" broker --config "$workdir/reference/engine.yaml" \
    --topics-from "$workdir/crash/engine.yaml" --state-dir "$broker_dir" \
    > "$workdir/broker.log" 2>&1 &
  broker_pid=$!
  started_pids+=("$broker_pid")
  local i
  for ((i = 0; i < 300; i++)); do
    [ -s "$broker_dir/broker.addr" ] && break
    kill -0 "$broker_pid" 2> /dev/null || { cat "$workdir/broker.log" >&2; fail_harness "the broker exited"; }
    sleep 0.1
  done
  [ -s "$broker_dir/broker.addr" ] || fail_harness "the broker wrote no address within 30 s"
  broker_addr="$(head -n 1 "$broker_dir/broker.addr")"
  log "broker (pid $broker_pid) at $broker_addr"
}

# A read_committed reader stops at a partition's last stable offset, short
# of its end while a transaction is open: the broker writes a commit's
# markers after answering it, and aborts a killed instance's open
# transaction only at its timeout. Waits (bounded) until every partition's
# last stable offset is its end; ListOffsets answers the one or the other
# with the asker's isolation level.
wait_for_stable_end() {  # topic
  [ "$broker_kind" = real ] || return 0
  local queries=() p i stable ends
  for p in $(kcat -b "$broker_addr" -L -t "$1" | awk '$1 == "partition" { sub(",", "", $2); print $2 }'); do
    queries+=(-t "$1:$p:-1")
  done
  [ ${#queries[@]} -gt 0 ] || fail_harness "$1: no partitions in the broker's metadata"
  for ((i = 0; i < 180; i++)); do
    stable="$(kcat -b "$broker_addr" -Q "${queries[@]}" -X isolation.level=read_committed 2> /dev/null | sort)"
    ends="$(kcat -b "$broker_addr" -Q "${queries[@]}" -X isolation.level=read_uncommitted 2> /dev/null | sort)"
    if [ -n "$ends" ] && [ "$stable" = "$ends" ]; then
      [ "$i" -lt 2 ] || log "$1: waited $((i / 2)) s for open transactions to end"
      return 0
    fi
    sleep 0.5
  done
  log "warning: $1 still has an open transaction after 90 s; reading up to its last stable offsets"
}

# Reads a topic from the beginning to its end with read_committed into
# "partition<TAB>offset<TAB>key<TAB>value" lines.
read_topic() {  # topic out-file
  wait_for_stable_end "$1"
  timeout 300 kcat -b "$broker_addr" -C -t "$1" -o beginning -e -q \
    -X isolation.level=read_committed -f '%p\t%o\t%k\t%s\n' > "$2" ||
    fail_harness "reading $1 with kcat failed or took more than 300 s"
}

# The embedded broker drops a partition's oldest message sets beyond 5 MiB:
# a topic read back must still start at offset 0 in every partition.
check_complete() {  # topic file
  local first
  first="$(awk -F '\t' '!($1 in lo) || $2 < lo[$1] { lo[$1] = $2 } END { m = 0; for (p in lo) if (lo[p] > m) m = lo[p]; print m }' "$2")"
  [ "$first" -eq 0 ] || fail_harness "$1: the broker dropped the oldest records (a partition starts at offset $first); use more --partitions or fewer --events"
}

# A real cluster gets every topic before any record, with the harness's
# partition counts (its auto-creation would give one partition): one
# `crmstream run --until-caught-up` per run, which creates the configured
# topics (the input included) and, the input being still empty, exits
# at once. Its own group and state directory keep the runs untouched.
create_topics() {
  [ "$broker_kind" = real ] || return 0
  local name dir
  for name in reference crash; do
    dir="$workdir/setup-$name"
    mkdir -p "$dir"
    sed -E "s/^(  group_id: .*)$/\1-setup/; s#^state_dir: .*#state_dir: $dir/state#" \
      "$workdir/$name/engine.yaml" > "$dir/engine.yaml"
    timeout 120 "$crmstream" run --config "$dir/engine.yaml" --broker-file "$broker_dir/broker.addr" \
      --metrics-port 0 -X "session.timeout.ms=$session_timeout_ms" --until-caught-up > "$dir/engine.log" 2>&1 ||
      { tail -n 20 "$dir/engine.log" >&2; fail_harness "creating the $name run's topics failed or took more than 120 s"; }
    grep -q "stopped: 0 records in" "$dir/engine.log" ||
      fail_harness "creating the $name run's topics: the input topic $input_topic was not empty (log: $dir/engine.log)"
  done
  log "topics created with $partitions partitions each: $input_topic, ${name_prefix}{reference,crash}.crm.*"
}

produce_input() {
  log "producing $events events into $input_topic"
  timeout 600 "$crmstream" generate --config "$workdir/reference/engine.yaml" --broker-file "$broker_dir/broker.addr" \
    --topic "$input_topic" -n "$events" --seed "$seed" --customers "$customers" -r 0 \
    --malformed-rate "$malformed_rate" --duplicate-rate "$duplicate_rate" \
    > "$workdir/generate.log" 2>&1 || { cat "$workdir/generate.log" >&2; fail_harness "crmstream generate failed or took more than 600 s"; }
  read_topic "$input_topic" "$workdir/input.tsv"
  check_complete "$input_topic" "$workdir/input.tsv"
  local n
  n=$(wc -l < "$workdir/input.tsv")
  [ "$n" -ge "$events" ] || fail_harness "the input topic holds $n records, fewer than the $events generated"
  log "input acknowledged and read back: $n records"
  # Each input partition's end offset ("partition end" lines): a kill with
  # a checkpoint short of it left input to process.
  awk -F '\t' '{ if ($2 + 1 > end[$1]) end[$1] = $2 + 1 } END { for (p in end) print p, end[p] }' \
    "$workdir/input.tsv" > "$workdir/input.ends"
}

engine_index=0
engine_pid=""
engine_crash_at=""  # CRMSTREAM_CRASH_AT of the next start ("": none)
engine_state_dir=""  # --state-dir of the next start ("": the run's own, <run>/state)
start_engine() {  # extra run flags...
  engine_index=$((engine_index + 1))
  engine_log="$run_dir/engine-$(printf '%02d' "$engine_index").log"
  local crash_at="$engine_crash_at"
  if [ -z "$crash_at" ] && [ "$abort_every" -gt 0 ] && [ "$run_name" = crash ]; then
    crash_at="transaction.abortable:every:$abort_every"
  fi
  CRMSTREAM_CRASH_AT="$crash_at" "$crmstream" run --config "$run_dir/engine.yaml" \
    --state-dir "${engine_state_dir:-$run_dir/state}" \
    --broker-file "$broker_dir/broker.addr" --metrics-port 0 \
    -X "session.timeout.ms=$session_timeout_ms" "$@" > "$engine_log" 2>&1 &
  engine_pid=$!
  started_pids+=("$engine_pid")
}

start_engine_crashing_at() {  # <point>:<nth>
  engine_crash_at="$1"
  start_engine
  engine_crash_at=""
}

last_status_of() {  # log: its latest status line, shortened
  local engine_log="$1"
  last_status
}

last_status() {  # the engine's latest status line, shortened
  local line
  line="$(grep ' ev/s | in ' "$engine_log" 2> /dev/null | tail -n 1 || true)"
  line="${line#"${line%%[![:space:]]*}"}"
  echo "${line:-no status line yet}"
}

# Runs the engine to the end of the input and stops it cleanly.
run_to_end() {
  local label="$1" rc
  if [ "$have_until_caught_up" -eq 1 ]; then
    start_engine --until-caught-up
    wait_exit "$engine_pid" "$run_timeout"
    rc=$exit_rc
    if [ "$rc" = 124 ]; then
      # An engine that never reports the end of the input is an engine
      # failure; the comparison still runs on what it left behind.
      log "$label: FAILED: the engine did not finish within $run_timeout s ($(last_status)); stopping it"
      stop_pid "$engine_pid"
      engine_failures=$((engine_failures + 1))
      return 0
    fi
  else
    start_engine
    local t=0
    while :; do
      kill -0 "$engine_pid" 2> /dev/null || break
      [ "$t" -ge $((run_timeout * 2)) ] && {
        stop_pid "$engine_pid"
        fail_harness "$label: the engine did not catch up within $run_timeout s (log: $engine_log)"
      }
      # Caught up: the last 4 status lines (2 s) show assigned partitions,
      # no lag (0, or -1 = nothing fetched: the committed offsets are at the
      # end) and unchanged in/out counts.
      if grep ' ev/s | in ' "$engine_log" 2> /dev/null | tail -n 4 | awk '
          { match($0, /in [0-9]+/); i = substr($0, RSTART + 3, RLENGTH - 3)
            match($0, /lag -?[0-9]+/); l = substr($0, RSTART + 4, RLENGTH - 4)
            match($0, /partitions [0-9]+/); p = substr($0, RSTART + 11, RLENGTH - 11)
            match($0, /out [0-9]+/); o = substr($0, RSTART + 4, RLENGTH - 4)
            n++; if (l > 0 || p == 0) bad = 1
            if (n > 1 && (i != pi || o != po)) bad = 1; pi = i; po = o }
          END { exit !(n == 4 && !bad) }'; then
        break
      fi
      sleep 0.5
      t=$((t + 1))
    done
    kill -TERM "$engine_pid" 2> /dev/null || true
    wait_exit "$engine_pid" 60
    rc=$exit_rc
    [ "$rc" = 124 ] && { stop_pid "$engine_pid"; fail_harness "$label: the engine did not stop within 60 s of SIGTERM"; }
  fi
  if [ "$rc" -ne 0 ]; then
    log "$label: FAILED: the engine exited with status $rc (log: $engine_log)"
    tail -n 5 "$engine_log" | sed 's/^/    /'
    engine_failures=$((engine_failures + 1))
  else
    log "$label: done ($(last_status))"
  fi
}

now_cs() {  # the clock in hundredths of a second
  local us="${EPOCHREALTIME/./}"
  echo $((10#$us / 10000))
}

# Where a kill landed, from the engine's log and, after it, the store:
#   join        before the restore began (the consumer-group join);
#   restore     inside the state restore ("restoring state of N partition(s)"
#               without the "assigned N partition(s)" that ends it);
#   processing  after the restore, with input left: some input partition's
#               checkpointed offset short of the partition's end;
#   idle        after the whole input was checkpointed.
# (The checkpoint phase is reached by crash points, not classified here.)
kill_phase=""
classify_kill() {
  local restoring assigned
  restoring="$({ grep -nE 'restoring state of [0-9]+ partition' "$engine_log" 2> /dev/null || true; } | tail -n 1 | cut -d: -f1)"
  assigned="$({ grep -nE 'assigned [0-9]+ partition' "$engine_log" 2> /dev/null || true; } | tail -n 1 | cut -d: -f1)"
  if [ -z "$restoring" ]; then kill_phase=join; return; fi
  if [ -z "$assigned" ] || [ "$assigned" -lt "$restoring" ]; then kill_phase=restore; return; fi
  local stats
  if ! stats="$(timeout 60 "$crmstream" state --state-dir "$run_dir/state" stats 2> /dev/null)"; then
    kill_phase=processing  # no readable store yet: nothing checkpointed, input left
    return
  fi
  if awk -v ends="$workdir/input.ends" -v topic="$input_topic" '
      BEGIN { while ((getline line < ends) > 0) { split(line, f, " "); end[f[1]] = f[2] } }
      $1 == topic { done[$2] = $6 }
      END { for (p in end) if (!(p in done) || done[p] < end[p]) exit 0; exit 1 }' <<< "$stats"; then
    kill_phase=processing
  else
    kill_phase=idle
  fi
}

# Kills per phase over the crash run.
declare -A phase_kills=([join]=0 [restore]=0 [processing]=0 [checkpoint]=0 [idle]=0)
record_kill() {  # phase what (kill_loop's done_kills and wanted)
  done_kills=$((done_kills + 1))
  phase_kills[$1]=$((phase_kills[$1] + 1))
  log "kill $done_kills/$wanted [$1]: $2 ($(last_status))"
}

# The engine's crash points inside a checkpoint (crmstream's
# include/crmstream/common/crash_point.h): CRMSTREAM_CRASH_AT=<point>:<nth>
# ends the engine at the nth checkpoint it reaches, at that step, as a kill
# would, with exit status 86.
# Kafka transactions (a real cluster) commit outputs and input offsets in
# one transaction, then write the staged state: their points instead of the
# flush ones.
crash_points=(checkpoint.before_flush checkpoint.after_flush checkpoint.before_write checkpoint.after_write)
crash_point_wait=20  # seconds an armed engine may run before it is killed instead
if [ "$broker_kind" = real ] && [ "$effective_guarantee" = exactly_once ]; then
  crash_points=(transaction.before_commit transaction.after_commit checkpoint.before_write checkpoint.after_write)
  crash_point_wait=30  # the group join waits out the killed predecessor's session
fi
crash_point_status=86

# An engine start that ended by itself with an error: logged and counted;
# false from the third one on (no more kills then).
note_engine_failure() {  # what happened
  log "start $engine_index: FAILED: $1 (log: $engine_log)"
  tail -n 5 "$engine_log" | sed 's/^/    /'
  engine_failures=$((engine_failures + 1))
  if [ "$engine_failures" -ge 3 ]; then
    log "the engine keeps failing on its own: no more kills"
    return 1
  fi
}

kill_loop() {
  local wanted="$1" done_kills=0 attempt=0 rc delay delay_cs t kill_at anchor_note
  while [ "$done_kills" -lt "$wanted" ] && [ "$attempt" -lt "$max_attempts" ]; do
    delay="${delays[$attempt]}"
    delay_cs=$((10#${delay/./}))  # the delay in hundredths of a second
    attempt=$((attempt + 1))
    if [ $((attempt % 3)) -eq 0 ]; then
      # Every third start dies inside a checkpoint: a crash point, the
      # points in turn, at the 1st to 3rd checkpoint (from the seed).
      local point="${crash_points[$(((attempt / 3 - 1) % ${#crash_points[@]}))]}" nth=$((1 + delay_cs % 3))
      start_engine_crashing_at "$point:$nth"
      wait_exit "$engine_pid" "$crash_point_wait"
      rc=$exit_rc
      if [ "$rc" -eq "$crash_point_status" ] && grep -q "crash point $point reached" "$engine_log"; then
        record_kill checkpoint "crash point $point at checkpoint $nth"
        continue
      fi
      if [ "$rc" -eq 124 ]; then
        # No nth checkpoint within the wait (the input may be done): a kill
        # like the others, where it lands.
        kill -KILL "$engine_pid" 2> /dev/null || true
        wait "$engine_pid" 2> /dev/null || true
        forget_pid "$engine_pid"
        classify_kill
        record_kill "$kill_phase" "SIGKILL after ${crash_point_wait} s (crash point $point:$nth not reached)"
        continue
      fi
      note_engine_failure "the engine armed with crash point $point:$nth exited with status $rc" || break
      continue
    fi
    start_engine
    t=$(now_cs)
    anchor_note="after start"
    if [ "$kill_anchor" = assigned ]; then
      # Wait (at most 60 s) for the start of the engine's real work: before it
      # a kill only interrupts the group join. Of the SIGKILLs, every other
      # one aims at the state restore: killed as soon as its first log line
      # is seen (a restore takes some 50-150 ms); the others count their
      # delay from the partition assignment (restore done).
      # An assignment that gave it partitions: a cooperative rebalance's first
      # round often gives a joining member none.
      local pattern='assigned [1-9][0-9]* partition' target="after the assignment" poll=0.01
      if [ $((attempt % 3)) -eq 2 ]; then
        pattern='restoring state of [0-9]+ partition'
        target="after the restore began"
        delay_cs=0
        delay=0
        poll=0.002
      fi
      local assign_deadline=$((t + 6000))
      while ! grep -qE "$pattern" "$engine_log" 2> /dev/null; do
        kill -0 "$engine_pid" 2> /dev/null || break
        if [ "$t" -ge "$assign_deadline" ]; then anchor_note="after start (no '$pattern' in 60 s)"; break; fi
        sleep "$poll"
        t=$(now_cs)
      done
      [ "$anchor_note" = "after start" ] && anchor_note="$target"
    fi
    # Sleep until the delay has passed, noticing an engine that ends before.
    kill_at=$((t + delay_cs))
    while [ "$t" -lt "$kill_at" ] && kill -0 "$engine_pid" 2> /dev/null; do
      sleep 0.02
      t=$(now_cs)
    done
    if kill -KILL "$engine_pid" 2> /dev/null; then
      wait "$engine_pid" 2> /dev/null || true
      forget_pid "$engine_pid"
      classify_kill
      record_kill "$kill_phase" "SIGKILL ${delay} s $anchor_note"
    else
      rc=0
      wait "$engine_pid" || rc=$?
      forget_pid "$engine_pid"
      if [ "$rc" -ne 0 ]; then
        note_engine_failure "the engine exited with status $rc before its kill at ${delay} s" || break
      else
        log "start $engine_index: the engine finished before its kill at ${delay} s ($(last_status))"
      fi
    fi
  done
  [ "$done_kills" -ge "$wanted" ] || log "only $done_kills of $wanted kills landed in $max_attempts starts (the engine kept finishing first)"
  log "kills by phase: restore ${phase_kills[restore]}, processing ${phase_kills[processing]}," \
    "checkpoint ${phase_kills[checkpoint]}, idle ${phase_kills[idle]}, group join ${phase_kills[join]}"
}

# ---------------------------------------------------------------- several instances
# --instances N (N > 1): the crash run is a consumer group of N engines,
# each with a state directory of its own (<run>/state-<slot>), and --kills
# chaos events at seeded moments, the kinds in turn from a seeded start:
#   kill     SIGKILL a live instance (its session runs out, the survivors
#            take its partitions and restore them from the changelog);
#   restart  a killed instance started again on its own store (local
#            checkpoint plus the changelog's tail);
#   remove   SIGTERM a live instance, which leaves the group for good;
#   add      a new instance with an empty store (full restore).
# At least one instance stays live and at most N + 1 are. After each event
# the harness waits for the rebalance it causes (at most the session timeout
# plus 40 s) and reports how long it took: from a kill or a removal to the
# survivors' next completed assignment that gives one of them partitions
# ("assigned N partition(s)" with N > 0: under cooperative rebalancing a
# round may give a member none; logged
# once the moved partitions are restored), from a start to the new member's
# first one. Then a delay from --min-delay..--max-delay, then the next event.
# At the end every live instance is stopped (SIGTERM) and one engine with an
# empty store runs to the end of the input: it restores every partition from
# the changelog, so its state is the merged state of the group.
inst_pid=()     # by slot (1-based)
inst_log=()
inst_status=()  # live, killed (SIGKILL; may restart on its store), removed (gone)
declare -A chaos_counts=([kill]=0 [restart]=0 [add]=0 [remove]=0)
chaos_kills_in_processing=0
chaos_removals_in_processing=0
handover_kill_cs=()   # hundredths of a second, per measured kill
handover_remove_cs=()
join_cs=()

assigned_lines() {  # log: how many completed assignments gave it partitions
  { grep -cE 'assigned [1-9][0-9]* partition' "$1" 2> /dev/null || true; } | tail -n 1
}

# Whether an instance was processing input, from its latest status line
# (every 500 ms): records in since the previous line, or a known lag (-1:
# not known yet, as right after an assignment).
was_processing() {  # log
  { grep -E ' ev/s \| in ' "$1" 2> /dev/null || true; } | tail -n 1 |
    awk '{ match($0, /lag -?[0-9]+/); lag = substr($0, RSTART + 4, RLENGTH - 4) + 0 }
      END { exit !(NR > 0 && ($1 + 0 > 0 || lag > 0)) }'
}

live_slots() {
  local s out=()
  for s in "${!inst_status[@]}"; do [ "${inst_status[$s]}" = live ] && out+=("$s"); done
  echo "${out[@]}"
}

start_instance() {  # slot
  engine_state_dir="$run_dir/state-$1"
  start_engine
  engine_state_dir=""
  inst_pid[$1]=$engine_pid
  inst_status[$1]=live
  inst_log[$1]=$engine_log
}

# An instance that ended by itself (an engine failure) is noticed before
# each event.
reap_instances() {
  local s rc
  for s in $(live_slots); do
    kill -0 "${inst_pid[$s]}" 2> /dev/null && continue
    rc=0
    wait "${inst_pid[$s]}" || rc=$?
    forget_pid "${inst_pid[$s]}"
    inst_status[$s]=killed
    engine_failures=$((engine_failures + 1))
    log "instance $s: FAILED: it exited by itself with status $rc (log: ${inst_log[$s]})"
    tail -n 5 "${inst_log[$s]}" | sed 's/^/    /'
  done
}

# Waits until one of the given logs completes one more assignment than the
# counts given, at most $2 seconds; sets waited_cs (-1: none seen).
waited_cs=-1
wait_assignment() {  # t0_cs limit_s slot=count...
  local t0="$1" limit="$2" t pair s n
  shift 2
  waited_cs=-1
  t=$(now_cs)
  while [ "$t" -lt $((t0 + limit * 100)) ]; do
    for pair in "$@"; do
      s="${pair%=*}"
      n="${pair#*=}"
      if [ "$(assigned_lines "${inst_log[$s]}")" -gt "$n" ]; then
        waited_cs=$((t - t0))
        return 0
      fi
    done
    sleep 0.05
    t=$(now_cs)
  done
}

fmt_cs() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }

chaos_loop() {  # events
  local wanted="$1" event kind pick s t0 busy survivors counts victim next_slot
  local limit=$((session_timeout_ms / 1000 + 40))
  local kinds=(kill restart remove add)

  # Seeded: the delay before each event and which instance it picks.
  local -a chaos_delay chaos_pick
  mapfile -t chaos_delay < <(awk -v seed="$seed" -v n="$wanted" -v lo="$min_delay" -v hi="$max_delay" \
    'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%d\n", 100 * (lo + rand() * (hi - lo)) }')
  mapfile -t chaos_pick < <(awk -v seed="$((seed + 1))" -v n="$wanted" \
    'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%d\n", rand() * 1000000 }')
  for ((s = 1; s <= instances; s++)); do start_instance "$s"; done
  next_slot=$((instances + 1))
  log "started $instances instances of group crmstream-crash-crash-$seed$group_suffix (stores $run_dir/state-<n>)"
  # The first event (a kill) counts its delay from the first assignment
  # that gave any instance partitions, not from the whole group's: under
  # load the first rounds of a group take seconds, while its first member
  # already processes the input, and once the input is done a kill leaves
  # no work in progress to recover (the check at the end wants one).
  t0=$(now_cs)
  local firsts=()
  for ((s = 1; s <= instances; s++)); do firsts+=("$s=0"); done
  wait_assignment "$t0" "$limit" "${firsts[@]}"
  [ "$waited_cs" -ge 0 ] || log "no instance completed an assignment within $limit s"
  for ((event = 0; event < wanted; event++)); do
    t0=$(now_cs)
    while [ "$(now_cs)" -lt $((t0 + chaos_delay[event])) ]; do sleep 0.02; done
    reap_instances
    read -r -a survivors <<< "$(live_slots)"
    kind="${kinds[$((event % 4))]}"  # a kill first: the whole input is still ahead
    local has_killed=0
    for s in "${!inst_status[@]}"; do [ "${inst_status[$s]}" = killed ] && has_killed=1; done
    # The group keeps 1 to N + 1 live instances.
    if [ "${#survivors[@]}" -le 1 ] && { [ "$kind" = kill ] || [ "$kind" = remove ]; }; then kind=restart; fi
    if [ "${#survivors[@]}" -gt "$instances" ] && { [ "$kind" = restart ] || [ "$kind" = add ]; }; then kind=kill; fi
    [ "$kind" = restart ] && [ "$has_killed" -eq 0 ] && kind=add
    pick="${chaos_pick[$event]}"
    case "$kind" in
      kill | remove)
        # Until a kill has landed in processing, a kill waits (at most 3 s)
        # for a survivor to be processing and picks its victim among those
        # that are: right after an assignment or a rewind an instance has
        # not fetched yet, and one that has done its partitions' input is
        # idle; a kill then leaves no work in progress to recover.
        local candidates=("${survivors[@]}")
        if [ "$kind" = kill ] && [ "$chaos_kills_in_processing" -eq 0 ]; then
          local busy_by=$(($(now_cs) + 300)) busy_slots=()
          while :; do
            busy_slots=()
            for s in "${survivors[@]}"; do was_processing "${inst_log[$s]}" && busy_slots+=("$s"); done
            [ "${#busy_slots[@]}" -eq 0 ] && [ "$(now_cs)" -lt "$busy_by" ] || break
            sleep 0.05
          done
          [ "${#busy_slots[@]}" -eq 0 ] || candidates=("${busy_slots[@]}")
        fi
        victim="${candidates[$((pick % ${#candidates[@]}))]}"
        counts=()
        for s in "${survivors[@]}"; do
          [ "$s" = "$victim" ] || counts+=("$s=$(assigned_lines "${inst_log[$s]}")")
        done
        t0=$(now_cs)
        if [ "$kind" = kill ]; then
          kill -KILL "${inst_pid[$victim]}" 2> /dev/null || true
          wait "${inst_pid[$victim]}" 2> /dev/null || true
          inst_status[$victim]=killed
          # Read after the kill: all it wrote before is there.
          busy=idle
          was_processing "${inst_log[$victim]}" && busy=processing
          [ "$busy" = processing ] && chaos_kills_in_processing=$((chaos_kills_in_processing + 1))
        else
          busy=idle
          was_processing "${inst_log[$victim]}" && busy=processing
          kill -TERM "${inst_pid[$victim]}" 2> /dev/null || true
          inst_status[$victim]=removed
        fi
        wait_assignment "$t0" "$limit" "${counts[@]}"
        if [ "$kind" = remove ]; then
          [ "$busy" = processing ] && chaos_removals_in_processing=$((chaos_removals_in_processing + 1))
          wait_exit "${inst_pid[$victim]}" 60
          if [ "$exit_rc" -ne 0 ]; then
            [ "$exit_rc" = 124 ] && stop_pid "${inst_pid[$victim]}"
            log "instance $victim: FAILED: a SIGTERM ended it with status $exit_rc (log: ${inst_log[$victim]})"
            engine_failures=$((engine_failures + 1))
          fi
        else
          forget_pid "${inst_pid[$victim]}"
        fi
        local what="SIGKILL" where="$busy: $(last_status_of "${inst_log[$victim]}")"
        [ "$kind" = remove ] && what="SIGTERM (leaves the group)"
        if [ "$waited_cs" -ge 0 ]; then
          [ "$kind" = kill ] && handover_kill_cs+=("$waited_cs") || handover_remove_cs+=("$waited_cs")
          where+="; its partitions processing again on the others after $(fmt_cs "$waited_cs") s"
        else
          where+="; no survivor completed an assignment within $limit s"
        fi
        log "event $((event + 1))/$wanted [$kind]: $what instance $victim ($where)"
        ;;
      restart | add)
        if [ "$kind" = restart ]; then
          local killed=()
          for s in "${!inst_status[@]}"; do [ "${inst_status[$s]}" = killed ] && killed+=("$s"); done
          victim="${killed[$((pick % ${#killed[@]}))]}"
        else
          victim=$next_slot
          next_slot=$((next_slot + 1))
        fi
        t0=$(now_cs)
        start_instance "$victim"
        wait_assignment "$t0" "$limit" "$victim=0"
        local how="on its own store"
        [ "$kind" = add ] && how="with an empty store"
        if [ "$waited_cs" -ge 0 ]; then
          join_cs+=("$waited_cs")
          how+="; joined and restored its partitions in $(fmt_cs "$waited_cs") s"
        else
          how+="; no assignment within $limit s"
        fi
        log "event $((event + 1))/$wanted [$kind]: instance $victim started $how (log: $(basename "$engine_log"))"
        ;;
    esac
    chaos_counts[$kind]=$((chaos_counts[$kind] + 1))
  done
  reap_instances
  for s in $(live_slots); do
    stop_pid "${inst_pid[$s]}"
    inst_status[$s]=removed
  done
  log "chaos events: kill ${chaos_counts[kill]} (in processing: $chaos_kills_in_processing)," \
    "restart ${chaos_counts[restart]}, add ${chaos_counts[add]}," \
    "remove ${chaos_counts[remove]} (in processing: $chaos_removals_in_processing); every instance stopped"
  summarise_times "death to processing again (SIGKILL, session ${session_timeout_ms} ms)" "${handover_kill_cs[@]}"
  summarise_times "clean leave to processing again (SIGTERM)" "${handover_remove_cs[@]}"
  summarise_times "start to first assignment (join and restore)" "${join_cs[@]}"
}

# The changelog restores of the run (the final engine's full one included),
# from the engines' "restored from the changelog: N records read, ... M MB in
# S s" lines.
summarise_restores() {
  local line
  line="$(cat "$run_dir"/engine-*.log | awk '
    /restored from the changelog: [0-9]+ records read/ {
      match($0, /: [0-9]+ records read/); r += substr($0, RSTART + 2, RLENGTH - 15) + 0
      match($0, /[0-9.]+ MB in [0-9.]+ s/); split(substr($0, RSTART, RLENGTH), f, " "); mb += f[1]; s += f[4]; n++ }
    END { if (n == 0) print "none"
          else printf "%d partition restores, %d records, %.1f MB in %.2f s (%.0f records/s, %.1f MB/s while restoring)",
                      n, r, mb, s, (s > 0 ? r / s : 0), (s > 0 ? mb / s : 0) }')"
  log "changelog restores: $line"
}

summarise_times() {  # what cs...
  local what="$1"
  shift
  [ $# -gt 0 ] || { log "$what: not measured"; return 0; }
  log "$what: $(printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 }
    END { printf "%d measured, min %.2f s, median %.2f s, max %.2f s", NR, v[1] / 100, v[int((NR + 1) / 2)] / 100, v[NR] / 100 }')"
}

# Wall-clock fields differ between any two runs: their values are masked.
mask_sed=""
for f in "${mask_fields[@]}"; do mask_sed+="s/\"$f\":[^,}]*/\"$f\":\"(masked)\"/g;"; done

collect() {
  local out="$run_dir/out" t
  mkdir -p "$out"
  for t in "${output_topics[@]}"; do
    read_topic "$name_prefix$run_name.$t" "$out/$t.raw"
    # A real broker drops nothing here (time and size retention far beyond
    # a run), and there a partition's first committed record may follow an
    # aborted transaction's, so does not start at offset 0.
    [ "$broker_kind" = real ] || check_complete "$name_prefix$run_name.$t" "$out/$t.raw"
    cut -f 3- "$out/$t.raw" | sed -E "$mask_sed" | sort > "$out/$t.sorted"
  done
  if timeout 300 "$crmstream" state --state-dir "$run_dir/state" dump > "$run_dir/state.jsonl" 2> "$run_dir/state.err"; then
    # The metadata family holds engine bookkeeping that may legitimately
    # differ between runs (e.g. changelog positions): not compared.
    { grep -v -F '"family":"metadata"' "$run_dir/state.jsonl" || true; } | sort > "$run_dir/state.sorted"
  else
    log "no state dump: $(head -c 300 "$run_dir/state.err")"
    : > "$run_dir/state.sorted"
    echo unavailable > "$run_dir/state.unavailable"
  fi
}

do_run() {  # name kills
  local name="$1" wanted="$2"
  run_dir="$workdir/$name"
  run_name="$name"
  engine_index=0
  log "=== $name run ($wanted kills)"
  if [ "$wanted" -gt 0 ] && [ "$instances" -gt 1 ]; then
    chaos_loop "$wanted"
  elif [ "$wanted" -gt 0 ]; then
    kill_loop "$wanted"
  fi
  run_to_end "$name: final run"
  [ "$instances" -le 1 ] || [ "$name" = reference ] || summarise_restores
  # The mode `exactly_once` resolved to (the engine logs it), so that a run
  # on a real cluster shows it used Kafka transactions.
  local mode
  mode="$({ grep -ohE 'exactly_once on this cluster: [a-z_]+' "$run_dir"/engine-*.log || true; } | sort -u | sed 's/.*: //' | paste -sd, -)"
  [ -z "$mode" ] || log "$name: exactly_once ran as: $mode"
  if [ "$abort_every" -gt 0 ] && [ "$name" = crash ]; then
    local aborted
    aborted="$(cat "$run_dir"/engine-*.log | grep -c 'fault point transaction.abortable reached' || true)"
    log "$name: transactions aborted by the fault point and rewound: $aborted"
    [ "$aborted" -gt 0 ] ||
      fail_harness "--abort-every $abort_every: no transaction was aborted (it needs Kafka transactions: exactly_once on a real cluster)"
  fi
  collect
}

# ---------------------------------------------------------------- compare
differences=0
trunc() { cut -c 1-"${1:-240}"; }
# The first N lines (matching an optional regex). Reads its whole input, so
# that no writer dies of SIGPIPE (which pipefail would turn into an exit).
first_lines() { awk -v n="$1" -v re="${2:-}" '(re == "" || $0 ~ re) && ++k <= n'; }

compare_runs() {
  local ref="$workdir/reference" crash="$workdir/crash" cmpdir="$workdir/compare"
  mkdir -p "$cmpdir"
  # Two empty runs are identical and prove nothing: the reference must hold
  # state in every family and output records.
  local family entries outputs=0 t
  for family in features models offsets dedup; do
    entries=$(grep -c "\"family\":\"$family\"" "$ref/state.sorted" || true)
    if [ "$entries" -eq 0 ]; then
      echo "   the reference run left no $family state: nothing to compare"
      differences=$((differences + 1))
    fi
  done
  for t in "${output_topics[@]}"; do outputs=$((outputs + $(wc -l < "$ref/out/$t.sorted"))); done
  if [ "$outputs" -eq 0 ]; then
    echo "   the reference run published no output record: nothing to compare"
    differences=$((differences + 1))
  fi
  echo
  echo "== state dump (families features, models, offsets, dedup; metadata excluded)"
  if [ -e "$ref/state.unavailable" ] || [ -e "$crash/state.unavailable" ]; then
    echo "   NOT COMPARED: a run left no readable state store (see state.err in the run folders)"
    differences=$((differences + 1))
  else
    printf '   %-10s %12s %12s  %s\n' family reference crash result
    local f nr nc
    for f in features models offsets dedup; do
      nr=$(grep -c "\"family\":\"$f\"" "$ref/state.sorted" || true)
      nc=$(grep -c "\"family\":\"$f\"" "$crash/state.sorted" || true)
      grep "\"family\":\"$f\"" "$ref/state.sorted" > "$cmpdir/state-$f.ref" || true
      grep "\"family\":\"$f\"" "$crash/state.sorted" > "$cmpdir/state-$f.crash" || true
      if cmp -s "$cmpdir/state-$f.ref" "$cmpdir/state-$f.crash"; then
        printf '   %-10s %12s %12s  %s\n' "$f" "$nr" "$nc" equal
      else
        printf '   %-10s %12s %12s  %s\n' "$f" "$nr" "$nc" DIFFERENT
        differences=$((differences + 1))
      fi
    done
    if ! cmp -s "$ref/state.sorted" "$crash/state.sorted"; then
      echo "   first differing entries (- reference, + crash):"
      { diff "$ref/state.sorted" "$crash/state.sorted" || true; } | first_lines 10 '^[<>]' |
        sed 's/^</-/; s/^>/+/' | trunc 300 | sed 's/^/     /' || true
    fi
  fi
  echo
  echo "== output topics (read_committed, multisets of key<TAB>value)"
  printf '   %-22s %10s %10s %10s %10s  %s\n' topic reference crash only-ref only-crash result
  local t r c a b
  for t in "${output_topics[@]}"; do
    r=$(wc -l < "$ref/out/$t.sorted")
    c=$(wc -l < "$crash/out/$t.sorted")
    comm -23 "$ref/out/$t.sorted" "$crash/out/$t.sorted" > "$cmpdir/$t.only-reference"
    comm -13 "$ref/out/$t.sorted" "$crash/out/$t.sorted" > "$cmpdir/$t.only-crash"
    a=$(wc -l < "$cmpdir/$t.only-reference")
    b=$(wc -l < "$cmpdir/$t.only-crash")
    if [ "$a" -eq 0 ] && [ "$b" -eq 0 ]; then
      printf '   %-22s %10s %10s %10s %10s  %s\n' "$t" "$r" "$c" 0 0 equal
    else
      printf '   %-22s %10s %10s %10s %10s  %s\n' "$t" "$r" "$c" "$a" "$b" DIFFERENT
      differences=$((differences + 1))
    fi
  done
  for t in "${output_topics[@]}"; do
    [ -s "$cmpdir/$t.only-reference" ] || [ -s "$cmpdir/$t.only-crash" ] || continue
    echo "   $t: first records only in the reference run (count, key, value):"
    uniq -c "$cmpdir/$t.only-reference" | first_lines 3 | trunc 300 | sed 's/^/     /'
    echo "   $t: first records only in the crash run (extra count, key, value):"
    uniq -c "$cmpdir/$t.only-crash" | first_lines 3 | trunc 300 | sed 's/^/     /'
  done
  echo
}

for name in reference crash; do
  mkdir -p "$workdir/$name"
  write_config "$workdir/$name/engine.yaml" "$name" "$workdir/$name/state" "$with_processing"
done
start_broker
create_topics
produce_input
do_run reference 0
do_run crash "$kills"
[ -z "$broker_pid" ] || stop_pid "$broker_pid"
compare_runs

finished=1
# Kills must have landed in each phase the promise covers (with 3 kills or
# more: one per phase is the least that shows it).
missed_phases=()
if [ "$instances" -gt 1 ]; then
  # The group's promise covers each kind of change and a death that took
  # partitions with input left to process.
  if [ "$kills" -ge 4 ]; then
    for phase in kill restart add remove; do
      [ "${chaos_counts[$phase]}" -gt 0 ] || missed_phases+=("$phase")
    done
  fi
  [ "$kills" -lt 1 ] || [ "$chaos_kills_in_processing" -gt 0 ] || missed_phases+=("kill during processing")
  [ "$kills" -lt 1 ] || [ "${#handover_kill_cs[@]}" -gt 0 ] || [ "${chaos_counts[kill]}" -eq 0 ] ||
    missed_phases+=("a handover after a kill")
elif [ "$kills" -ge 3 ]; then
  for phase in restore processing checkpoint; do
    [ "${phase_kills[$phase]}" -gt 0 ] || missed_phases+=("$phase")
  done
fi
[ "$instances" -gt 1 ] || log "kills by phase: restore ${phase_kills[restore]}, processing ${phase_kills[processing]}," \
  "checkpoint ${phase_kills[checkpoint]}, idle ${phase_kills[idle]}, group join ${phase_kills[join]}"
if [ "$engine_failures" -gt 0 ]; then
  log "FAILED: $engine_failures engine run(s) failed or did not finish (logs in $workdir)"
  exit 1
fi
if [ "$differences" -gt 0 ]; then
  log "FAILED: $differences difference(s) between the reference and the crash run (seed $seed; files in $workdir/compare)"
  exit 1
fi
if [ "${#missed_phases[@]}" -gt 0 ]; then
  if [ "$instances" -gt 1 ]; then
    log "FAILED: the chaos run had no: ${missed_phases[*]} (seed $seed); more --kills or --events, or other --min-delay/--max-delay"
  else
    log "FAILED: no kill landed in: ${missed_phases[*]} (seed $seed); more --kills, or other --min-delay/--max-delay"
  fi
  exit 1
fi
if [ "$instances" -gt 1 ]; then
  log "PASSED: merged state and read_committed outputs of $instances instances identical after $kills chaos events (seed $seed)"
else
  log "PASSED: state and read_committed outputs identical after $kills kills (seed $seed)"
fi
