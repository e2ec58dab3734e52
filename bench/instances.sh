#!/usr/bin/env bash
# Throughput of a consumer group of 1, 2 and 3 `crmstream run` instances on
# this machine, side by side in one run. One input topic (12 partitions by
# default) is produced once with the project's generator; then for each
# instance count, in turn, a fresh consumer group of that many instances
# (each its own state directory, at least once, the product's pipeline and
# outputs as shipped) consumes the whole topic from its start. A run's time
# is from the first instance's start to the moment the group's committed
# offsets reach the topic's end in every partition (read from the broker by
# bench/group_progress.py every 100 ms); its CPU is the instances' user +
# system time until then (/proc/<pid>/stat). Printed per run: events/s of
# the group, instance CPU seconds, events per CPU-second, the broker's CPU,
# the machine's busy cores over the run and its load; then each count's
# ratios to the single instance of the same round.
#
#   bench/instances.sh --kafka-instance bench --events 1000000 --rounds 2
#   bench/instances.sh --broker embedded --events 150000
#
# --broker real (default): an Apache Kafka cluster of scripts/kafka.sh, the
# shared one or, with --kafka-instance NAME, a private one (started if it
# is not running, and then stopped at the end); topics and groups are named
# instances-<pid>-<n>.* and left on the cluster. --broker embedded: one
# `crmstream broker` process (librdkafka's mock cluster, 3 brokers) that the
# instances share through --broker-file, as `crmstream run` beside
# `crmstream broker` does; its 5 MiB per partition log bounds --events (the
# script fails when the topic lost its oldest records).
# Everything listens on 127.0.0.1; the processes and the work directory go
# at the end, whatever the exit.
set -euo pipefail
cd "$(dirname "$0")/.."

broker=real
kafka_instance=
events=1000000
customers=10000
partitions=12
counts="1 2 3"
rounds=1
seed=42
run_timeout=600
keep=0
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
  cat << EOF
Options: --broker real|embedded  --kafka-instance NAME  --events N (default $events)
  --customers N ($customers)  --partitions N ($partitions)  --counts "1 2 3"
  --rounds N ($rounds: each round runs every count once)  --seed N ($seed)
  --run-timeout S ($run_timeout: a group that has not finished by then fails the run)
  --keep (keep the work directory: configurations, logs)
EOF
}
need() { [ $# -ge 2 ] || { echo "instances.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --broker) need "$@"; broker=$2; shift 2 ;;
    --kafka-instance) need "$@"; kafka_instance=$2; shift 2 ;;
    --events) need "$@"; events=$2; shift 2 ;;
    --customers) need "$@"; customers=$2; shift 2 ;;
    --partitions) need "$@"; partitions=$2; shift 2 ;;
    --counts) need "$@"; counts=$2; shift 2 ;;
    --rounds) need "$@"; rounds=$2; shift 2 ;;
    --seed) need "$@"; seed=$2; shift 2 ;;
    --run-timeout) need "$@"; run_timeout=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "instances.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
for v in events customers partitions rounds seed run_timeout; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "instances.sh: --${v//_/-} takes a positive integer" >&2; exit 2; }
done
[[ "$counts" =~ ^[1-9][0-9]*( [1-9][0-9]*)*$ ]] || { echo "instances.sh: --counts takes positive integers" >&2; exit 2; }
case "$broker" in real | embedded) ;; *) echo "instances.sh: --broker is real or embedded" >&2; exit 2 ;; esac

binary=build/release/src/cli/crmstream
[ -x "$binary" ] || { echo "instances.sh: no $binary: build first (scripts/build.sh release)" >&2; exit 2; }
progress=(python3 bench/group_progress.py)

log() { echo "instances.sh: $*" >&2; }
failed=0
die() { log "ERROR: $*"; failed=1; exit 1; }

work=$(mktemp -d /tmp/crmstream-instances.XXXXXX)
started_pids=()
stop_kafka=0
stop_pids() {  # pids...: one SIGTERM each (a second one skips the final checkpoint), up to 60 s, then SIGKILL
  local pid i
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2> /dev/null || true
  for pid in "$@"; do
    for ((i = 0; i < 600; i++)); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || stop_failures=$((stop_failures + 1))
  done
}
stop_failures=0
cleanup() {
  local rc=$? pid live=()
  trap - EXIT INT TERM
  for pid in "${started_pids[@]}"; do kill -0 "$pid" 2> /dev/null && live+=("$pid"); done
  stop_pids "${live[@]}"
  [ "$stop_kafka" -eq 1 ] && scripts/kafka.sh --instance "$kafka_instance" stop > /dev/null 2>&1
  # Kept for a look at the logs: on request, after a failure, after an
  # instance that did not stop cleanly; not after an interruption.
  if [ "$keep" -eq 1 ] || [ "$failed" -eq 1 ] || [ "$stop_failures" -gt 0 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 2' INT
trap 'log terminated; exit 2' TERM

ticks_of() {  # pids...: their user + system clock ticks (0 for none)
  local pid total=0 stat
  for pid in "$@"; do
    stat=$(< "/proc/$pid/stat")
    stat=${stat##*) }
    read -r -a f <<< "$stat"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# ---------------------------------------------------------------- the broker
prefix="instances-$$-$RANDOM"
broker_file="$work/broker.addr"
broker_pids=()
# The configuration of every run: the shipped one with this run's topic
# names, the input's partitions, no fixed ports, a state directory per
# instance (given at start); the group is set per run.
sed -e "s|^state_dir: .*|state_dir: $work/state|" -e "s|^metrics_port: .*|metrics_port: 0|" \
  -e "s|^dashboard_port: .*|dashboard_port: 0|" -e "s|name: crm\.|name: $prefix.crm.|" \
  -e "/^inputs:/,/^outputs:/ s|partitions: [0-9]*|partitions: $partitions|" \
  config/crmstream.yaml > "$work/engine.yaml"
input_topic="$prefix.crm.interactions"
if ! grep -q "name: $input_topic" "$work/engine.yaml" || ! grep -q "partitions: $partitions" "$work/engine.yaml"; then
  die "config/crmstream.yaml has no input 'name: crm.interactions' / 'partitions:' lines to rewrite"
fi
group_config() {  # group -> its configuration file
  sed "s|^  group_id: .*|  group_id: $1|" "$work/engine.yaml" > "$work/$1.yaml"
  echo "$work/$1.yaml"
}

if [ "$broker" = real ]; then
  export CRMSTREAM_BROKER_HOME=${CRMSTREAM_BROKER_HOME:-$PWD/.cache/kafka}
  kafka=(scripts/kafka.sh)
  [ -n "$kafka_instance" ] && kafka+=(--instance "$kafka_instance")
  if ! "${kafka[@]}" status > /dev/null 2>&1; then
    log "starting the Kafka cluster (${kafka[*]} start)"
    "${kafka[@]}" start > /dev/null || die "${kafka[*]} start failed"
    [ -n "$kafka_instance" ] && stop_kafka=1
  fi
  eval "$("${kafka[@]}" env)"
  echo "$CRMSTREAM_TEST_KAFKA" > "$broker_file"
  for ((node = 1; node <= ${CRMSTREAM_TEST_KAFKA_BROKERS:-1}; node++)); do
    broker_pids+=("$("${kafka[@]}" pid "$node")") || die "no process id of Kafka node $node"
  done
  # The topics with their partition counts before any record (the cluster's
  # auto-creation would give one partition): an engine run over the still
  # empty input creates every configured topic and stops.
  timeout 120 "$binary" run -c "$(group_config "$prefix-setup")" --state-dir "$work/setup" \
    --broker-file "$broker_file" --until-caught-up > "$work/setup.log" 2>&1 ||
    { tail -n 20 "$work/setup.log" >&2; die "creating the topics failed or took more than 120 s"; }
  grep -q "stopped: 0 records in" "$work/setup.log" || die "the setup run read records (log: $work/setup.log)"
  log "Kafka at $CRMSTREAM_TEST_KAFKA${kafka_instance:+ (instance $kafka_instance)}; topics $prefix.crm.*"
else
  # Every topic up front, the groups' changelogs included (the embedded
  # cluster has no CreateTopics for the engine to make them itself).
  also=()
  for ((round = 1; round <= rounds; round++)); do
    for n in $counts; do also+=(--topics-from "$(group_config "$prefix-r$round-n$n")"); done
  done
  "$binary" broker -c "$work/engine.yaml" --state-dir "$work/broker" "${also[@]}" > "$work/broker.log" 2>&1 &
  started_pids+=($!)
  broker_pids=($!)
  for ((i = 0; i < 300; i++)); do
    [ -s "$work/broker/broker.addr" ] && break
    kill -0 "${broker_pids[0]}" 2> /dev/null || { cat "$work/broker.log" >&2; die "the embedded broker exited"; }
    sleep 0.1
  done
  [ -s "$work/broker/broker.addr" ] || die "the embedded broker wrote no address within 30 s"
  cp "$work/broker/broker.addr" "$broker_file"
  log "embedded cluster (crmstream broker, pid ${broker_pids[0]}) at $(head -n 1 "$broker_file")"
fi
bootstrap=$(head -n 1 "$broker_file")

# ---------------------------------------------------------------- the input
log "producing $events events of $customers customers into $input_topic ($partitions partitions)"
produce_start=$EPOCHREALTIME
timeout 600 "$binary" generate -c "$work/engine.yaml" --broker-file "$broker_file" --topic "$input_topic" \
  -n "$events" --seed "$seed" --customers "$customers" -r 0 > "$work/generate.log" 2>&1 ||
  { tail -n 20 "$work/generate.log" >&2; die "crmstream generate failed or took more than 600 s"; }
"${progress[@]}" ends --bootstrap "$bootstrap" --topic "$input_topic" > "$work/ends" ||
  die "could not read the input topic's offsets"
[ "$(wc -l < "$work/ends")" -eq "$partitions" ] || die "the input topic has $(wc -l < "$work/ends") partitions, not $partitions"
awk '$2 != 0 { exit 1 }' "$work/ends" ||
  die "the broker dropped the input's oldest records (a partition starts above 0): fewer --events"
records=$(awk '{ n += $3 } END { print n }' "$work/ends")
[ "$records" -ge "$events" ] || die "the input topic holds $records records, fewer than the $events generated"
log "input: $records records, produced in $(awk -v a="$produce_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

# ---------------------------------------------------------------- the runs
results="$work/results"
: > "$results"
run_group() {  # round count
  local round=$1 n=$2 group="$prefix-r$1-n$2" config s pids=() logs=() t0 cpu0 ticks0 out rc=0 parts processed
  config=$(group_config "$group")
  cpu0=$(head -n 1 /proc/stat)
  ticks0=$(ticks_of "${broker_pids[@]}")
  t0=$EPOCHREALTIME
  for ((s = 1; s <= n; s++)); do
    logs+=("$work/$group-$s.log")
    "$binary" run -c "$config" --state-dir "$work/$group/state-$s" --broker-file "$broker_file" \
      --guarantee at_least_once > "${logs[-1]}" 2>&1 &
    pids+=($!)
    started_pids+=($!)
  done
  out=$("${progress[@]}" wait --bootstrap "$bootstrap" --topic "$input_topic" --group "$group" \
    --ends "$work/ends" --timeout "$run_timeout" --t0 "$t0" --pids "$(IFS=,; echo "${pids[*]}")" \
    --cpu0 "$cpu0" --broker-pids "$(IFS=,; echo "${broker_pids[*]}")" --broker-ticks0 "$ticks0" \
    --logs "$(IFS=,; echo "${logs[*]}")") || rc=$?
  # The partitions each instance held at the end ("assigned N partition(s);
  # M in total").
  parts=""
  for ((s = 1; s <= n; s++)); do
    parts+="${parts:+/}$({ grep -oE 'partition\(s\); [0-9]+ in total' "${logs[s - 1]}" || echo '; 0 i'; } |
      tail -n 1 | awk '{ print $2 }')"
  done
  local failures=$stop_failures
  stop_pids "${pids[@]}"
  [ "$stop_failures" -eq "$failures" ] ||
    log "WARNING: $((stop_failures - failures)) instance(s) of $group did not stop cleanly on SIGTERM (logs kept: $work)"
  if [ "$rc" -ne 0 ]; then
    for ((s = 1; s <= n; s++)); do
      log "instance $s of $group, last lines:"
      tail -n 5 "${logs[s - 1]}" | sed 's/^/    /' >&2
    done
    die "round $round, $n instance(s): the group did not finish (exit $rc)"
  fi
  # Records the instances processed, from their closing lines: above the
  # input's count, what a rebalance made a new owner process again (at least
  # once: from the last committed offset).
  processed=$(sed -n 's/^stopped: \([0-9]*\) records in.*/\1/p' "${logs[@]}" | awk '{ n += $1 } END { print n + 0 }')
  # seconds= instance_cpu_s= broker_cpu_s= machine_busy_cores= loadavg= settled_s=
  local -A got=()
  local key value
  while IFS='=' read -r key value; do got[$key]=$value; done <<< "$out"
  for key in seconds instance_cpu_s broker_cpu_s machine_busy_cores loadavg settled_s; do
    [ -n "${got[$key]:-}" ] || die "bench/group_progress.py reported no $key"
  done
  echo "$round $n ${got[seconds]} ${got[instance_cpu_s]} ${got[broker_cpu_s]} ${got[machine_busy_cores]}" \
    "${got[loadavg]} $parts ${got[settled_s]} $processed" >> "$results"
  awk -v r="$round" -v n="$n" -v s="${got[seconds]}" -v c="${got[instance_cpu_s]}" -v b="${got[broker_cpu_s]}" \
    -v m="${got[machine_busy_cores]}" -v l="${got[loadavg]}" -v e="$records" -v p="$parts" -v j="${got[settled_s]}" \
    -v d="$processed" 'BEGIN {
      printf "round %d, %d instance(s): %.2f s, %.0f events/s, instances %.1f CPU-s (%.2f cores), %.0f events per CPU-s; broker %.1f CPU-s; machine %.2f busy cores, load %s; partitions held %s, last assignment at %.2f s, %d records processed\n",
        r, n, s, e / s, c, c / s, e / c, b, m, l, p, j, d }' >&2
}

log "$rounds round(s) of $counts instance(s); a group ends when its committed offsets reach the input's end (timeout $run_timeout s)"
# Even rounds run the counts in reverse, so that a drift of the machine's
# load over the run does not favour one count.
read -r -a forward <<< "$counts"
for ((round = 1; round <= rounds; round++)); do
  order=("${forward[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#forward[@]} - 1; i >= 0; i--)); do order+=("${forward[i]}"); done
  fi
  for n in "${order[@]}"; do run_group "$round" "$n"; done
done

# One line per run; the ratios are to the run of the first count of --counts
# in the same round.
echo "instances over $records events ($customers customers, $partitions partitions, $broker broker, at least once), $(nproc) cores"
awk -v e="$records" -v counts="$counts" '
  BEGIN { k = split(counts, order, " ") }
  { r = $1; n = $2; s[r, n] = $3; c[r, n] = $4; b[r, n] = $5; m[r, n] = $6; l[r, n] = $7; p[r, n] = $8; j[r, n] = $9
    d[r, n] = $10; rounds[r] = 1 }
  END {
    printf "%-5s %4s %8s %9s %7s %9s %7s %5s %5s %-8s %7s %9s %8s %9s\n", "round", "inst", "seconds", "events/s", "cpu-s",
      "ev/cpu-s", "broker", "busy", "load", "parts", "settled", "processed", "rate/1st", "evcpu/1st"
    for (r = 1; r in rounds; r++) for (i = 1; i <= k; i++) { n = order[i]; if (!((r, n) in s)) continue
      one = ((r, order[1]) in s) ? order[1] : n
      printf "%-5d %4d %8.2f %9.0f %7.1f %9.0f %7.1f %5.2f %5s %-8s %7.2f %9d %8.2f %9.2f\n", r, n, s[r, n], e / s[r, n],
        c[r, n], e / c[r, n], b[r, n], m[r, n], l[r, n], p[r, n], j[r, n], d[r, n], s[r, one] / s[r, n], c[r, one] / c[r, n] }
  }' "$results"
echo "seconds: first start to committed offsets at the input's end; cpu-s: the instances' user + system time until then;"
echo "broker: its CPU-s meanwhile; busy: the machine's busy cores meanwhile (every process); settled: the last completed"
echo "assignment before the end; processed: records the instances processed (above the input: processed again after a rebalance)"
