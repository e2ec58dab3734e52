#!/usr/bin/env bash
# The long-form soak: the main job (embedded Kafka + generator + engine) at a
# sustained rate for a long time, watched from outside:
#   - the engine's input counter every 0.25 s (/metrics): the longest time
#     without progress;
#   - its resident set every 20 s (/proc);
#   - that it ends at --duration on its own, and ends on SIGTERM after it.
# Exits 0 when the run reached its duration with no stop in progress longer
# than --max-pause seconds and resident memory flat (last third within
# --max-growth of the middle third).
#
#   scripts/soak.sh --rate 20000 --customers 20000 --duration 900
set -euo pipefail
cd "$(dirname "$0")/.."

rate=20000
customers=20000
duration=900
max_pause=1.0     # seconds; the commit interval
max_growth=0.10   # relative growth of the resident set, last third vs middle third
config=config/crmstream.yaml
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --customers) customers=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --max-pause) max_pause=$2; shift 2 ;;
    --max-growth) max_growth=$2; shift 2 ;;
    -c|--config) config=$2; shift 2 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

. scripts/main-job-config.sh
work=$(mktemp -d /tmp/crmstream-soak.XXXXXX)
port=$((20000 + RANDOM % 20000))
main_job_config "$config" "$work" "$port"

echo "soak: $rate events/s, $customers customers, $duration s; work dir $work"
"$binary" run -c "$work/config.yaml" --demo --rate "$rate" --customers "$customers" \
  --duration "$duration" > "$work/run.log" 2>&1 &
pid=$!

status=0
python3 - "$pid" "$port" "$duration" "$max_pause" "$max_growth" "$work" <<'PY' || status=$?
import os, re, signal, sys, time, urllib.request
pid, port, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
max_pause, max_growth, work = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]

def alive():
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False

def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0

def scrape():
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except Exception:
        return ""

def sample(body, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", body, re.M)
    return float(m.group(1)) if m else None

def input_records():
    return sample(scrape(), "crmstream_input_records_total")

start = time.time()
rss = []            # (seconds, MB)
last_value, last_change = None, None
longest_pause, pause_at = 0.0, 0.0
next_rss = start
while alive():
    now = time.time()
    if now >= next_rss:
        rss.append((now - start, rss_mb()))
        body = scrape()
        cache = sample(body, 'crmstream_rocksdb_memory_bytes{kind="block_cache"}') or 0
        features = sample(body, "crmstream_feature_store_memory_bytes") or 0
        print(f"soak: t={now - start:6.0f} s  rss={rss[-1][1]:7.1f} MB  "
              f"rocksdb block cache={cache / 2**20:6.1f} MB  feature store={features / 2**20:6.1f} MB  "
              f"in={last_value}", flush=True)
        next_rss += 20
    v = input_records()
    if v is not None:
        if last_value is None or v != last_value:
            if last_change is not None and last_value is not None:
                gap = now - last_change
                if gap > longest_pause and now - start > 15:  # after start-up
                    longest_pause, pause_at = gap, now - start
            last_value, last_change = v, now
    if now - start > duration + 120:
        print("soak: FAILED: the run did not end at its duration; sending SIGTERM", flush=True)
        os.kill(pid, signal.SIGTERM)
        time.sleep(60)
        if alive():
            print("soak: FAILED: SIGTERM did not stop it either; SIGKILL", flush=True)
            os.kill(pid, signal.SIGKILL)
        sys.exit(1)
    time.sleep(0.25)
elapsed = time.time() - start

third = [m for t, m in rss if duration / 3 <= t < 2 * duration / 3]
last = [m for t, m in rss if t >= 2 * duration / 3]
growth = (max(last) / max(third) - 1.0) if third and last else float("nan")
ok = elapsed >= duration and longest_pause <= max_pause and (growth == growth and growth <= max_growth)
print(f"soak: ended after {elapsed:.0f} s; input records {last_value:.0f}; "
      f"longest stretch without progress {longest_pause:.2f} s (at t={pause_at:.0f} s); "
      f"rss {min(m for _, m in rss):.0f}-{max(m for _, m in rss):.0f} MB, "
      f"last third vs middle third {growth * 100:+.1f}%")
print("soak: PASSED" if ok else "soak: FAILED")
sys.exit(0 if ok else 1)
PY
wait "$pid" || true
tail -n 3 "$work/run.log"
exit $status
