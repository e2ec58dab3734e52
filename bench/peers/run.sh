#!/usr/bin/env bash
# crmstream and the engines a user would pick instead, side by side on the
# same real broker (scripts/kafka.sh) and the same pre-produced input, one
# after the other, each pinned to one core:
#
#   crmstream                  pipeline: 30-day window features, the online
#                              models (churn among them), crm.customer-scores
#                              (coalesced per commit: 1 s, its default)
#   crmstream-10ms             the same committing every 10 ms (its minimum):
#                              closer to one output per event, lower latency
#   crmstream-event            the same with one customer-scores record per
#                              event, scored then (the pipeline's
#                              outputs.customer_scores_every: event): the
#                              peers' workload record for record
#   crmstream-churn            crmstream-event with the pipeline's segments and
#                              behaviour anomaly models switched off
#                              (models.segmentation/behaviour.enabled: false):
#                              the peers' workload model for model too (churn,
#                              with crmstream's value model beside it)
#   Kafka Streams (Java)       kafka-streams/: RocksDB state store, the
#                              logistic update written by hand
#   Quix Streams + River       quix-river/app.py: Quix's RocksDB state,
#                              River's LogisticRegression
#
# The peers' workload, per event: decode the JSON, update the customer's
# 30-day RFM counts in local state, score the online logistic churn model and
# train it (an account_closed event is a churn), produce one JSON record.
#
#   bench/peers/run.sh               # all four rows; the table and the ratios
#   PEERS_ONLY="crmstream kafka-streams" bench/peers/run.sh
#
# Two phases per engine:
#   throughput  PEERS_EVENTS generated events (PEERS_CUSTOMERS customers,
#               PEERS_PARTITIONS partitions) already in the topic; events per
#               CPU-second of the pinned process, which is "events/s per core"
#               whatever else the machine runs. For a peer the CPU spent
#               before its first output (JVM start, Python imports, group
#               join) is left out; crmstream's whole run counts (its start,
#               the group join and its final checkpoint included).
#   latency     a fresh topic fed at half of that engine's throughput (the
#               lower of its CPU and wall rates) for PEERS_LATENCY_S seconds
#               (the generator pinned to the other core), once the engine
#               answered PEERS_WARMUP_EVENTS events of another seed; the first
#               2 s of the feed do not count; every output record is joined
#               to the input event it came from (customer_id, as_of_ms = the
#               event's timestamp); latency = output broker timestamp - input
#               broker timestamp (topics with LogAppendTime), by measure.py.
# After its throughput phase each peer's RFM values are compared with a batch
# recomputation from the input (measure.py check); a difference fails the run.
#
# Installs (git-ignored, under $PEERS_CACHE, default .cache/peers): a Python
# venv with pinned quixstreams, river and confluent-kafka from PyPI, and the
# Kafka Streams jar and its dependencies from Maven Central. Needs the
# release build (scripts/build.sh release), Python 3.9+, Java 17 and Maven.
# Results and logs: $PEERS_CACHE/runs/<time>/.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/peers"
cache="${PEERS_CACHE:-$root/.cache/peers}"
events="${PEERS_EVENTS:-300000}"
customers="${PEERS_CUSTOMERS:-2000}"
partitions="${PEERS_PARTITIONS:-4}"
latency_s="${PEERS_LATENCY_S:-20}"
warmup_events="${PEERS_WARMUP_EVENTS:-200}"
core="${PEERS_CORE:-0}"
feeder_core="${PEERS_FEEDER_CORE:-1}"
only="${PEERS_ONLY:-crmstream crmstream-10ms crmstream-event crmstream-churn kafka-streams quix-river}"
crmstream="${CRMSTREAM_BIN:-$root/build/release/src/cli/crmstream}"

log() { echo "peers: $*" >&2; }
die() {
  log "$*"
  exit 1
}

[ -x "$crmstream" ] || die "no $crmstream: build it first (scripts/build.sh release)"
command -v taskset > /dev/null || die "taskset (util-linux) is needed to pin each engine to one core"

# The real broker, started when it is not running (idempotent).
eval "$("$root/scripts/kafka.sh" start)"
bootstrap="$CRMSTREAM_TEST_KAFKA"

# Python: Quix Streams, River and confluent-kafka (measure.py), pinned.
venv="$cache/venv"
if [ ! -f "$venv/.complete" ]; then
  log "installing quixstreams, river and confluent-kafka into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/quix-river/requirements.txt" || die "pip install failed (see above)"
  touch "$venv/.complete"
fi
py="$venv/bin/python"
measure() { "$py" "$here/measure.py" "$@"; }

# Java: the Kafka Streams application and its dependencies.
ks_build="$cache/kafka-streams"
ks_jar="$ks_build/churn-scores-kafka-streams-1.jar"
if [[ " $only " == *" kafka-streams "* ]] &&
  { [ ! -f "$ks_jar" ] || [ -n "$(find "$here/kafka-streams" -newer "$ks_jar" -type f)" ]; }; then
  log "building the Kafka Streams peer (Maven) into $ks_build"
  (cd "$here/kafka-streams" && mvn -q -B -Dstyle.color=never -Dpeers.build.dir="$ks_build" package \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$ks_build/libs") >&2 ||
    die "mvn could not build bench/peers/kafka-streams"
fi

# crmstream's commit interval, ms: customer-scores leave at each commit
# (crmstream-event: at each event, so its first output waits for no commit).
commit_ms() {
  case "$1" in
    crmstream-10ms) echo 10 ;;
    *) echo 1000 ;; # the default of config/crmstream.yaml
  esac
}
first_flush_ms() {
  case "$1" in
    crmstream-event | crmstream-churn) echo 0 ;;
    *) commit_ms "$1" ;;
  esac
}
customer_scores_every() {
  case "$1" in
    crmstream-event | crmstream-churn) echo event ;;
    *) echo commit ;;
  esac
}

run_id="$(date -u +%Y%m%dT%H%M%S)"
work="$cache/runs/$run_id"
mkdir -p "$work"
prefix="peers.$run_id"
input="$prefix.events"
log "run $run_id: $events events, $customers customers, $partitions partitions; results in $work"

generate() { # TOPIC COUNT [RATE [SEED]]
  taskset -c "$feeder_core" "$crmstream" generate -b "$bootstrap" -t "$1" --count "$2" \
    --rate "${3:-0}" --customers "$customers" --seed "${4:-17}" --malformed-rate 0 --duplicate-rate 0 \
    2>> "$work/generate.log"
}

measure topics "$bootstrap" "$partitions" "$input"
generate "$input" "$events"
[ "$(measure count "$bootstrap" "$input")" -eq "$events" ] || die "the input topic does not hold $events events"

# crmstream's configuration for an input/output pair: features over one
# 30-day window, the online models on (MODELS_ON false: churn and value
# only), one output kind (customer-scores).
crmstream_config() { # NAME INPUT OUTPUT COMMIT_MS EVERY MODELS_ON
  cat > "$work/$1-pipeline.yaml" << EOF
name: peers
features:
  windows_days: [30]
models:
  enabled: true
  segmentation: {enabled: $6}
  behaviour: {enabled: $6}
outputs:
  customer_scores: true
  customer_scores_every: $5
  churn_alerts: false
  segments: false
  anomalies: false
  correlations: false
EOF
  cat > "$work/$1.yaml" << EOF
kafka:
  properties:
    bootstrap.servers: $bootstrap
  group_id: $prefix.$1
inputs:
  - name: $2
    partitions: $partitions
outputs:
  customer_scores: {name: $3, partitions: $partitions}
  churn_alerts: {name: $prefix.$1.churn-alerts, partitions: 1}
  segments: {name: $prefix.$1.segments, partitions: 1}
  anomalies: {name: $prefix.$1.anomalies, partitions: 1}
  correlations: {name: $prefix.$1.correlations, partitions: 1}
  dead_letter: {name: $prefix.$1.dead-letter, partitions: 1}
state_dir: $work/$1-state
pipeline: $work/$1-pipeline.yaml
commit_interval_ms: $4
# The 5 ms the README's peer rows were measured with (the engine's own
# default at least once on a Kafka cluster is 0: outputs leave at once, for
# 0-7% more CPU).
producer_linger_ms: 5
EOF
}

# The command of engine $1 on topics $2 -> $3 (phase name $4), pinned.
engine_command() {
  local peer="$1" in="$2" out="$3" phase="$4"
  case "$peer" in
    crmstream | crmstream-10ms | crmstream-event | crmstream-churn)
      local models_on=true
      [ "$peer" = crmstream-churn ] && models_on=false
      crmstream_config "$peer-$phase" "$in" "$out" "$(commit_ms "$peer")" \
        "$(customer_scores_every "$peer")" "$models_on"
      local caught_up=()
      [ "$phase" = throughput ] && caught_up=(--until-caught-up)
      echo taskset -c "$core" "$crmstream" run -c "$work/$peer-$phase.yaml" --metrics-port 0 \
        "${caught_up[@]}"
      ;;
    kafka-streams)
      echo taskset -c "$core" java -Xms256m -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$ks_jar:$ks_build/libs/*" \
        crmstream.peers.ChurnScores "$bootstrap" "$in" "$out" "$prefix.$peer.$phase" "$work/$peer-$phase-state"
      ;;
    quix-river)
      echo taskset -c "$core" "$py" "$here/quix-river/app.py" "$bootstrap" "$in" "$out" \
        "$prefix.$peer.$phase" "$work/$peer-$phase-state"
      ;;
    *) die "unknown engine $peer (PEERS_ONLY: crmstream crmstream-10ms crmstream-event crmstream-churn kafka-streams quix-river)" ;;
  esac
}

for peer in $only; do
  out="$prefix.$peer.scores"
  measure topics "$bootstrap" "$partitions" "$out"
  # A peer produces one record per event: it is done at $events outputs.
  # crmstream coalesces customer-scores per commit and stops by itself
  # (--until-caught-up) once every partition is processed and checkpointed.
  target="$events"
  is_crmstream=false
  [[ "$peer" == crmstream* ]] && is_crmstream=true && target=0
  log "$peer: throughput on the pre-produced topic"
  # shellcheck disable=SC2046  # the command is a word list
  measure run "$bootstrap" "$out" "$target" "$work/$peer-throughput.json" -- \
    $(engine_command "$peer" "$input" "$out" throughput) > "$work/$peer-throughput.log" 2>&1 ||
    die "$peer failed (log: $work/$peer-throughput.log)"
  read -r r w o < <(measure rates "$work/$peer-throughput.json" "$events" "$peer" "$(first_flush_ms "$peer")") ||
    die "$peer: no rates (log: $work/$peer-throughput.log)"
  log "$peer: $r events per CPU-second, $w per wall second, $o outputs"
  # The peers' RFM values against a batch recomputation from the input.
  if ! $is_crmstream; then
    measure check "$bootstrap" "$input" "$out" > "$work/$peer-check.json" ||
      die "$peer: outputs differ from the reference RFM ($work/$peer-check.json)"
    log "$peer: RFM of every output as recomputed from the input: $(cat "$work/$peer-check.json")"
  fi

  # Latency at half of what it sustained: the lower of its CPU and wall rates.
  live_rate=$(((r < w ? r : w) / 2))
  live_events=$((live_rate * latency_s))
  [ "$live_events" -le 1000000 ] || live_events=1000000
  live_in="$prefix.$peer.live-events"
  live_out="$prefix.$peer.live-scores"
  measure topics "$bootstrap" "$partitions" "$live_in" "$live_out"
  log "$peer: latency at $live_rate events/s ($live_events events)"
  # shellcheck disable=SC2046
  $(engine_command "$peer" "$live_in" "$live_out" latency) > "$work/$peer-latency.log" 2>&1 &
  engine_pid=$!
  # Warm-up: a few events of another seed (other event ids and times), and
  # the feed starts once their outputs are out (the engine has its
  # partitions and has started its JIT or imports).
  generate "$live_in" "$warmup_events" 0 18
  want="$warmup_events"
  $is_crmstream && want=1
  got="$(measure wait "$bootstrap" "$live_out" "$want" 0 180)"
  [ "$got" -ge "$want" ] || die "$peer: not ready after 180 s (log: $work/$peer-latency.log)"
  from_ms=$(($(date +%s%3N) + 2000))
  generate "$live_in" "$live_events" "$live_rate"
  want=$((warmup_events + live_events))
  $is_crmstream && want=0
  got="$(measure wait "$bootstrap" "$live_out" "$want" 5 120)"
  kill -TERM "$engine_pid" 2> /dev/null || true
  wait "$engine_pid" || true
  $is_crmstream || [ "$got" -ge "$want" ] ||
    die "$peer: $got outputs of $want live events (log: $work/$peer-latency.log)"
  measure latency "$bootstrap" "$live_in" "$live_out" "$from_ms" "$live_rate" > "$work/$peer-latency.json"
  log "$peer: $(cat "$work/$peer-latency.json")"
done

# The table and the ratios crmstream / peer.
# shellcheck disable=SC2086  # $only is a word list
measure table "$work" "$events" $only | tee "$work/table.md"
