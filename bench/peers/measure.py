"""Measurements for bench/peers/run.sh, through the broker only.

  measure.py topics BOOTSTRAP PARTITIONS TOPIC...
      create the topics (fresh names per run; an existing one is an error)
      with LogAppendTime: a record's timestamp is when the broker appended
      it (the peers copy the input's timestamp onto their outputs)
  measure.py run BOOTSTRAP OUTPUT_TOPIC TARGET RESULT_JSON -- CMD...
      start CMD (already pinned by the caller), sample its CPU time and the
      record count of OUTPUT_TOPIC; stop it (SIGTERM) once TARGET records are
      out, or let it exit by itself (TARGET 0); write CPU seconds, wall
      seconds and the CPU time at the first output record to RESULT_JSON
  measure.py wait BOOTSTRAP OUTPUT_TOPIC COUNT IDLE_S TIMEOUT_S
      return when COUNT records are out (COUNT 0: when the count has not
      moved for IDLE_S seconds)
  measure.py count BOOTSTRAP TOPIC
      print the topic's record count
  measure.py rates RESULT_JSON EVENTS ENGINE COMMIT_MS
      events per CPU-second and per wall second of a `run` (below), and the
      outputs; exits non-zero when a peer did not write one output per event
  measure.py check BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC
      recompute every event's 30-day RFM from the input topic (a batch pass
      per customer, in the order of its partition) and count the output
      records of a peer whose RFM values differ; exits non-zero on any
  measure.py table WORK_DIR EVENTS ENGINE...
      the results table (markdown) and the ratios crmstream / peer
  measure.py latency BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC FROM_MS RATE
      join every output record to the input event it was computed from
      (customer_id and as_of_ms = the event's timestamp) and print the
      latency from the input's broker timestamp to the output's broker
      timestamp (p50/p99/p999, ms) as JSON; only inputs appended at or
      after FROM_MS (epoch ms) count

The CPU time of a process is read from /proc (utime + stime of all its
threads); after it exits, from its rusage.
"""

import json
import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SAMPLE_S = 0.1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def consumer(bootstrap):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "crmstream-peers-measure",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )


def partitions(c, topic):
    md = c.list_topics(topic, timeout=10).topics[topic]
    if md.error is not None:
        raise SystemExit(f"measure.py: topic {topic}: {md.error}")
    return [TopicPartition(topic, p) for p in sorted(md.partitions)]


def record_count(c, topic):
    total = 0
    for tp in partitions(c, topic):
        low, high = c.get_watermark_offsets(tp, timeout=10)
        total += high - low
    return total


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cmd_topics(bootstrap, count, *names):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics([NewTopic(n, int(count), 1, config=config) for n in names])
    for name, f in futures.items():
        f.result(timeout=30)


def cmd_run(bootstrap, topic, target, result_path, *cmd):
    target = int(target)
    c = consumer(bootstrap)
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    first = None  # (wall, cpu) when the first output record is seen
    done = None  # (wall, cpu) when TARGET records are out
    count = 0
    last_growth = None  # wall time when the count last grew
    prev_count = 0
    exited = None  # (status, rusage) once reaped
    while exited is None:
        time.sleep(SAMPLE_S)
        cpu = cpu_seconds(proc.pid)
        try:
            count = record_count(c, topic)
        except Exception:  # the topic appears with the first output
            count = 0
        now = time.monotonic() - start
        if count > prev_count:
            last_growth, prev_count = now, count
        if first is None and count > 0 and cpu is not None:
            first = (now, cpu)
        if target > 0 and count >= target and cpu is not None:
            done = (now, cpu)
            proc.send_signal(signal.SIGTERM)
            break
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            exited = (status, usage)
    if exited is None:
        _, status, usage = os.wait4(proc.pid, 0)
        exited = (status, usage)
    status, usage = exited
    total_cpu = usage.ru_utime + usage.ru_stime
    wall = time.monotonic() - start
    if done is None:
        done = (wall, total_cpu)
    result = {
        "exit_status": os.waitstatus_to_exitcode(status),
        "outputs": record_count(c, topic),
        "wall_s": done[0],
        "cpu_s": done[1],
        "first_output_wall_s": first[0] if first else None,
        "first_output_cpu_s": first[1] if first else None,
        "last_output_wall_s": last_growth,
    }
    c.close()
    with open(result_path, "w") as f:
        json.dump(result, f)
    print(json.dumps(result), file=sys.stderr)


def cmd_wait(bootstrap, topic, count, idle_s, timeout_s):
    count, idle_s, timeout_s = int(count), float(idle_s), float(timeout_s)
    c = consumer(bootstrap)
    start = time.monotonic()
    last, last_change = -1, start
    while time.monotonic() - start < timeout_s:
        try:
            n = record_count(c, topic)
        except Exception:
            n = 0
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if count > 0 and n >= count:
            break
        if count == 0 and n > 0 and now - last_change >= idle_s:
            break
        time.sleep(0.2)
    c.close()
    print(last)


def read_all(c, topic):
    """Yields (key, value, broker timestamp ms) of every record of the topic."""
    tps = partitions(c, topic)
    ends = {}
    for tp in tps:
        low, high = c.get_watermark_offsets(tp, timeout=10)
        if high > low:
            ends[tp.partition] = high
            tp.offset = low
    c.assign([tp for tp in tps if tp.partition in ends])
    while ends:
        for m in c.consume(num_messages=10000, timeout=5):
            if m.error() is not None:
                raise SystemExit(f"measure.py: {topic}: {m.error()}")
            yield m.key(), m.value(), m.timestamp()[1]
            if m.offset() + 1 >= ends.get(m.partition(), 0):
                ends.pop(m.partition(), None)
    c.unassign()


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


def cmd_latency(bootstrap, input_topic, output_topic, from_ms, rate):
    c = consumer(bootstrap)
    sent = {}
    for _, value, ts in read_all(c, input_topic):
        e = json.loads(value)
        sent[(str(e["customer_id"]), int(e["timestamp"]))] = ts
    cutoff = int(from_ms)
    latencies, unmatched, outputs = [], 0, 0
    for _, value, ts in read_all(c, output_topic):
        outputs += 1
        r = json.loads(value)
        in_ts = sent.get((str(r["customer_id"]), int(r["as_of_ms"])))
        if in_ts is None:
            unmatched += 1
        elif in_ts >= cutoff:
            latencies.append(ts - in_ts)
    c.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "rate": int(rate),
                "inputs": len(sent),
                "outputs": outputs,
                "unmatched": unmatched,
                "samples": len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p99_ms": percentile(latencies, 0.99),
                "p999_ms": percentile(latencies, 0.999),
                "max_ms": latencies[-1] if latencies else None,
            }
        )
    )


def reference_rfm(c, input_topic):
    """(customer, event time) -> (frequency, monetary, events) over the
    30 UTC days ending on the event's day, recomputed from each customer's
    whole history; pairs that occur twice are left out."""
    history, seen, dup = {}, set(), set()
    for _, value, _ in read_all(c, input_topic):
        e = json.loads(value)
        key = (str(e["customer_id"]), int(e["timestamp"]))
        (dup if key in seen else seen).add(key)
        purchase = e["type"] == "purchase"
        history.setdefault(key[0], []).append((key[1], purchase, e.get("amount", 0.0) if purchase else 0.0))
    day_ms, ref = 86_400_000, {}
    for customer, events in history.items():
        # Per UTC day: (purchases, amount, events) of the history so far; the
        # window sums the 30 days ending on the event's day.
        days = {}
        for ts, purchase, amount in events:
            p, a, n = days.get(ts // day_ms, (0, 0.0, 0))
            days[ts // day_ms] = (p + purchase, a + amount, n + 1)
            day = ts // day_ms
            window = [days[d] for d in range(day - 29, day + 1) if d in days]
            key = (customer, ts)
            if key not in dup:
                ref[key] = tuple(map(sum, zip(*window)))
    return ref


def cmd_check(bootstrap, input_topic, output_topic):
    c = consumer(bootstrap)
    ref = reference_rfm(c, input_topic)
    checked = wrong = 0
    for _, value, _ in read_all(c, output_topic):
        r = json.loads(value)
        want = ref.get((r["customer_id"], int(r["as_of_ms"])))
        if want is None:
            continue
        checked += 1
        got = (r["frequency_30d"], r["monetary_30d"], r["events_30d"])
        if got[0] != want[0] or got[2] != want[2] or abs(got[1] - want[1]) > 1e-6 * max(1.0, want[1]):
            wrong += 1
            if wrong <= 3:
                print(f"measure.py: {output_topic}: {r} != reference {want}", file=sys.stderr)
    c.close()
    print(json.dumps({"checked": checked, "wrong": wrong}))
    if wrong or checked == 0:
        raise SystemExit(1)


def cmd_rates(result_path, events, engine, commit_ms):
    """A peer's rates leave out what it spent before its first output (JVM
    start, imports, group join). crmstream's CPU is its whole run; its wall
    time runs from one commit interval (its first flush at the latest)
    before its first output to its last output."""
    with open(result_path) as f:
        r = json.load(f)
    n = int(events)
    crm = engine.startswith("crmstream")
    # A JVM stopped by SIGTERM exits with 143 after its shutdown hooks.
    if r["exit_status"] not in (0, -signal.SIGTERM, 128 + signal.SIGTERM) or r["first_output_cpu_s"] is None:
        raise SystemExit(f"measure.py: {engine}: exit status {r['exit_status']}, no output")
    if not crm and r["outputs"] < n:
        raise SystemExit(f"measure.py: {engine}: {r['outputs']} outputs of {n} events")
    cpu = r["cpu_s"] - (0 if crm else r["first_output_cpu_s"])
    # crmstream's last output is its final flush, before its last checkpoint.
    end = r["last_output_wall_s"] if crm else r["wall_s"]
    wall = end - r["first_output_wall_s"] + (float(commit_ms) / 1000 if crm else 0)
    rates = {"cpu_rate": round(n / cpu), "wall_rate": round(n / wall), "outputs": r["outputs"]}
    with open(result_path, "w") as f:
        json.dump({**r, **rates}, f)
    print(rates["cpu_rate"], rates["wall_rate"], rates["outputs"])


def cmd_table(work, events, *engines):
    rows = {}
    for e in engines:
        with open(f"{work}/{e}-throughput.json") as f:
            t = json.load(f)
        with open(f"{work}/{e}-latency.json") as f:
            lat = json.load(f)
        rows[e] = (t, lat)
    print(
        f"| engine | events/s per core (CPU) | events/s (wall) | outputs of {events} events "
        "| latency p50 / p99 / p999 ms | at events/s (samples) |"
    )
    print("|---|---|---|---|---|---|")
    for e, (t, lat) in rows.items():
        print(
            f"| {e} | {t['cpu_rate']} | {t['wall_rate']} | {t['outputs']} "
            f"| {lat['p50_ms']} / {lat['p99_ms']} / {lat['p999_ms']} "
            f"| {lat['rate']} ({lat['samples']}) |"
        )
    for c, (crm_t, crm_lat) in rows.items():
        if not c.startswith("crmstream"):
            continue
        for e, (t, lat) in rows.items():
            if e.startswith("crmstream"):
                continue
            print(
                f"{c} / {e}: events/s per core {crm_t['cpu_rate'] / t['cpu_rate']:.2f}, "
                f"per wall second {crm_t['wall_rate'] / t['wall_rate']:.2f}; "
                f"p99 latency {crm_lat['p99_ms']} ms vs {lat['p99_ms']} ms"
            )


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    what, args = sys.argv[1], sys.argv[2:]
    if what == "run":
        if "--" not in args:
            raise SystemExit("measure.py run: give the command after --")
        i = args.index("--")
        cmd_run(*args[:i], *args[i + 1 :])
    elif what == "topics":
        cmd_topics(*args)
    elif what == "wait":
        cmd_wait(*args)
    elif what == "count":
        c = consumer(args[0])
        print(record_count(c, args[1]))
        c.close()
    elif what == "latency":
        cmd_latency(*args)
    elif what == "rates":
        cmd_rates(*args)
    elif what == "check":
        cmd_check(*args)
    elif what == "table":
        cmd_table(*args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
