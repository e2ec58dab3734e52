#!/usr/bin/env bash
# Output latency by kind, measured on the main job (embedded Kafka + generator
# + engine) at a fixed input rate: the engine's own histogram
# crmstream_output_latency_seconds (input broker timestamp -> the output's
# broker acknowledgement), scraped after a warm-up and at the end; the
# difference is the steady state. Prints p50 / p99 / p99.9 per output kind
# (interpolated within buckets, as Prometheus' histogram_quantile does) and
# the input rate the engine kept.
#
#   bench/output_latency.sh --rate 20000 --customers 20000 --duration 120 --warmup 40
# (-X key=value passes a librdkafka property to the engine's clients;
# --customer-scores-every batch|event sets the pipeline's
# outputs.customer_scores_every, commit by default.)
#
# --broker real runs the same job on the shared Kafka cluster of
# scripts/kafka.sh (started if it is not running) instead of the embedded
# one, on topics and a group of its own (named latency-<pid>-<n>.crm.*;
# left on the cluster, as bench_broker leaves its own).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=20000
customers=20000
duration=120
warmup=40
guarantee=
broker=embedded
extra=()
config=config/crmstream.yaml
scores_every=
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --customers) customers=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --guarantee) guarantee=$2; shift 2 ;;
    --broker) broker=$2; shift 2 ;;
    -c|--config) config=$2; shift 2 ;;
    -X) extra+=(-X "$2"); shift 2 ;;
    --customer-scores-every) scores_every=$2; shift 2 ;;
    *) echo "output_latency.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

. scripts/main-job-config.sh
work=$(mktemp -d /tmp/crmstream-latency.XXXXXX)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
main_job_config "$config" "$work" "$port"
if [ -n "$scores_every" ]; then
  pipeline=$(sed -n 's|^pipeline: *\([^ #]*\).*|\1|p' "$work/config.yaml")
  sed "s|^  customer_scores_every: [a-z]*|  customer_scores_every: $scores_every|" "$pipeline" \
    > "$work/pipeline.yaml"
  grep -q "^  customer_scores_every: $scores_every" "$work/pipeline.yaml" ||
    { echo "output_latency.sh: $pipeline has no customer_scores_every line" >&2; exit 2; }
  sed -i "s|^pipeline: .*|pipeline: $work/pipeline.yaml|" "$work/config.yaml"
fi
case "$broker" in
  embedded) ;;
  real)
    export CRMSTREAM_BROKER_HOME=${CRMSTREAM_BROKER_HOME:-$PWD/.cache/kafka}
    scripts/kafka.sh start >/dev/null
    eval "$(scripts/kafka.sh env)"
    # Topics and group of this run only: the cluster is shared.
    prefix="latency-$$-$RANDOM"
    sed -i -e "s|^  properties: {}|  properties: {bootstrap.servers: \"$CRMSTREAM_TEST_KAFKA\"}|" \
        -e "s|^  group_id: .*|  group_id: $prefix|" -e "s|name: crm\.|name: $prefix.crm.|" \
        "$work/config.yaml"
    grep -q "bootstrap.servers: \"$CRMSTREAM_TEST_KAFKA\"" "$work/config.yaml" ||
      { echo "output_latency.sh: $config has no 'properties: {}' line to point at the broker" >&2
        exit 2; }
    ;;
  *) echo "output_latency.sh: --broker is embedded or real" >&2; exit 2 ;;
esac
args=(run -c "$work/config.yaml" --demo --rate "$rate" --customers "$customers"
      --backfill-days 0 --duration "$duration")
[ -n "$guarantee" ] && args+=(--guarantee "$guarantee")
args+=("${extra[@]}")

echo "output latency ($broker broker): $rate events/s, $customers customers," \
     "${guarantee:-configured guarantee}," \
     "$duration s (first $warmup s left out)"
"$binary" "${args[@]}" > "$work/run.log" 2>&1 &
pid=$!

status=0
python3 - "$port" "$duration" "$warmup" <<'PY' || status=$?
import re, sys, time, urllib.request
port, duration, warmup = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sample = re.compile(r'^(crmstream_output_latency_seconds_bucket|crmstream_events_consumed_total)'
                    r'(?:\{([^}]*)\})? (\S+)$')

def scrape():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets, consumed = {}, 0.0
    for line in text.splitlines():
        m = sample.match(line)
        if not m:
            continue
        if m.group(1) == "crmstream_events_consumed_total":
            consumed += float(m.group(3))
            continue
        labels = dict(kv.split("=", 1) for kv in m.group(2).split(","))
        output = labels["output"].strip('"')
        le = float(labels["le"].strip('"').replace("+Inf", "inf"))
        buckets.setdefault(output, []).append((le, float(m.group(3))))
    return buckets, consumed, time.monotonic()

def quantile(q, cumulative):
    total = cumulative[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower

start = time.monotonic()
first = None
while first is None and time.monotonic() - start < warmup + 30:
    time.sleep(1)
    if time.monotonic() - start >= warmup:
        try:
            first = scrape()
        except OSError:
            pass
if first is None:
    sys.exit("output_latency.sh: the admin server never answered")
time.sleep(max(1.0, duration - (time.monotonic() - start) - 3))
last = scrape()
seconds = last[2] - first[2]
print(f"input rate kept: {(last[1] - first[1]) / seconds:,.0f} events/s over {seconds:.0f} s")
print(f"{'output':<18}{'samples':>10}{'p50 ms':>10}{'p99 ms':>10}{'p99.9 ms':>10}")
for output, cumulative in sorted(last[0].items()):
    before = dict(first[0].get(output, []))
    delta = [(le, count - before.get(le, 0.0)) for le, count in cumulative]
    n = delta[-1][1]
    if n <= 0:
        continue
    p = [quantile(q, delta) * 1e3 for q in (0.5, 0.99, 0.999)]
    print(f"{output:<18}{n:>10.0f}{p[0]:>10.1f}{p[1]:>10.1f}{p[2]:>10.1f}")
PY
wait "$pid" || true
[ "$status" -eq 0 ] || { tail -20 "$work/run.log" >&2; exit "$status"; }
