#!/usr/bin/env python3
"""A consumer group's progress over one topic, read from the broker.

bench/instances.sh runs a group of `crmstream run` instances over a
pre-produced topic; this waits until the group's committed offsets reach the
topic's end in every partition and reports the elapsed time and the CPU the
instances (and the broker) used until then. It speaks the Kafka protocol
itself (Metadata v0, ListOffsets v1, FindCoordinator v0, OffsetFetch v1: what
both Apache Kafka and librdkafka's embedded cluster answer), so it needs no
client library and costs next to nothing while it polls.

  group_progress.py ends   --bootstrap H:P --topic T
      prints "partition start end" lines; exit 1 when the topic is unknown
  group_progress.py wait   --bootstrap H:P --topic T --group G --ends FILE
                           --timeout S --t0 EPOCH --pids P,P --cpu0 "cpu line"
                           [--broker-pids P,P --broker-ticks0 N] [--logs L,L]
      polls every 100 ms; on completion prints key=value lines (seconds,
      instance_cpu_s, broker_cpu_s, machine_busy_cores, loadavg, and with the
      instances' logs settled_s: when the last assignment before the end
      completed); on timeout prints the partitions short of their end and
      exits 3.
"""
import argparse
import datetime
import os
import re
import socket
import struct
import sys
import time

API_LIST_OFFSETS, API_METADATA, API_OFFSET_FETCH, API_FIND_COORDINATOR = 2, 3, 9, 10
COORDINATOR_ERRORS = {14, 15, 16}  # loading, not available, not coordinator: retry


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value[0]

    def int16(self):
        return self.take(">h")

    def int32(self):
        return self.take(">i")

    def int64(self):
        return self.take(">q")

    def string(self):
        n = self.int16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item):
        return [item() for _ in range(self.int32())]


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def array(items, encode):
    return struct.pack(">i", len(items)) + b"".join(encode(i) for i in items)


class Connection:
    """One broker connection, requests answered in order."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.correlation = 0

    def request(self, api, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api, version, self.correlation) + string("group_progress")
        message = header + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        size = struct.unpack(">i", self.read(4))[0]
        reader = Reader(self.read(size))
        if reader.int32() != self.correlation:
            raise RuntimeError("response out of order")
        return reader

    def read(self, n):
        chunks = b""
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            chunks += chunk
        return chunks


class Cluster:
    def __init__(self, bootstrap):
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.bootstrap = (host, int(port))
        self.connections = {}

    def connect(self, address):
        if address not in self.connections:
            self.connections[address] = Connection(*address)
        return self.connections[address]

    def metadata(self, topic):
        """{partition: leader address}; empty when the topic is unknown."""
        r = self.connect(self.bootstrap).request(API_METADATA, 0, array([topic], string))
        brokers = {}
        for _ in range(r.int32()):
            node, host, port = r.int32(), r.string(), r.int32()
            brokers[node] = (host, port)
        leaders = {}
        for _ in range(r.int32()):
            error, _name = r.int16(), r.string()
            for _ in range(r.int32()):
                perror, partition, leader = r.int16(), r.int32(), r.int32()
                r.array(r.int32)
                r.array(r.int32)
                if error == 0 and perror == 0 and leader in brokers:
                    leaders[partition] = brokers[leader]
        return leaders

    def offsets(self, topic, leaders, timestamp):
        """{partition: offset} at -1 (the end) or -2 (the log start)."""
        by_leader = {}
        for partition, leader in leaders.items():
            by_leader.setdefault(leader, []).append(partition)
        result = {}
        for leader, partitions in by_leader.items():
            body = struct.pack(">i", -1) + array(
                [topic], lambda t: string(t) + array(
                    partitions, lambda p: struct.pack(">iq", p, timestamp)))
            r = self.connect(leader).request(API_LIST_OFFSETS, 1, body)
            for _ in range(r.int32()):
                r.string()
                for _ in range(r.int32()):
                    partition, error, _ts, offset = r.int32(), r.int16(), r.int64(), r.int64()
                    if error != 0:
                        raise RuntimeError(f"ListOffsets {topic} [{partition}]: error {error}")
                    result[partition] = offset
        return result

    def coordinator(self, group):
        r = self.connect(self.bootstrap).request(API_FIND_COORDINATOR, 0, string(group))
        error, _node, host, port = r.int16(), r.int32(), r.string(), r.int32()
        if error in COORDINATOR_ERRORS:
            return None
        if error != 0:
            raise RuntimeError(f"FindCoordinator {group}: error {error}")
        return (host, port)

    def committed(self, group, topic, partitions):
        """{partition: committed offset (-1: none)}, or None while the
        coordinator is not ready."""
        coordinator = self.coordinator(group)
        if coordinator is None:
            return None
        body = string(group) + array(
            [topic], lambda t: string(t) + array(partitions, lambda p: struct.pack(">i", p)))
        r = self.connect(coordinator).request(API_OFFSET_FETCH, 1, body)
        result = {}
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                partition, offset = r.int32(), r.int64()
                r.string()
                error = r.int16()
                if error in COORDINATOR_ERRORS:
                    return None
                if error != 0:
                    raise RuntimeError(f"OffsetFetch {group} [{partition}]: error {error}")
                result[partition] = offset
        return result


def process_ticks(pid):
    """utime + stime of a live process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


ASSIGNED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\] \[info\] assigned \d+ partition")


def settled(logs, before):
    """The epoch time of the latest completed assignment (spdlog's local
    time stamps) at or before `before`, over the instances' logs."""
    latest = None
    for path in logs:
        with open(path, errors="replace") as f:
            for line in f:
                m = ASSIGNED.match(line)
                if not m:
                    continue
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                if t <= before and (latest is None or t > latest):
                    latest = t
    return latest


def busy_idle(cpu_line):
    values = [int(v) for v in cpu_line.split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, idle


def ends(args):
    cluster = Cluster(args.bootstrap)
    leaders = cluster.metadata(args.topic)
    if not leaders:
        sys.exit(f"group_progress.py: {args.topic}: unknown topic or no leader")
    start = cluster.offsets(args.topic, leaders, -2)
    end = cluster.offsets(args.topic, leaders, -1)
    for p in sorted(leaders):
        print(p, start[p], end[p])


def wait(args):
    with open(args.ends) as f:
        end = {int(p): int(e) for p, _s, e in (line.split() for line in f if line.strip())}
    cluster = Cluster(args.bootstrap)
    pids = [int(p) for p in args.pids.split(",")]
    broker_pids = [int(p) for p in args.broker_pids.split(",") if p]
    deadline = args.t0 + args.timeout
    committed = None
    while time.time() < deadline:
        try:
            committed = cluster.committed(args.group, args.topic, sorted(end))
        except (OSError, ConnectionError):
            cluster.connections.clear()  # a broker moved or restarted: connect again
            committed = None
        if committed is not None and all(committed.get(p, -1) >= e for p, e in end.items()):
            break
        for pid in pids:
            if not os.path.exists(f"/proc/{pid}"):
                sys.exit(f"group_progress.py: instance pid {pid} exited before the group finished")
        time.sleep(0.1)
    else:
        short = [f"[{p}] {committed.get(p, -1) if committed else '?'}/{e}"
                 for p, e in sorted(end.items()) if not committed or committed.get(p, -1) < e]
        print(f"group_progress.py: the group {args.group} did not reach the end within "
              f"{args.timeout:.0f} s; short of it: {' '.join(short)}", file=sys.stderr)
        sys.exit(3)
    finished = time.time()
    seconds = finished - args.t0
    hz = os.sysconf("SC_CLK_TCK")
    instance_cpu = sum(process_ticks(pid) for pid in pids) / hz
    broker_cpu = (sum(process_ticks(pid) for pid in broker_pids) - args.broker_ticks0) / hz
    with open("/proc/stat") as f:
        busy1, idle1 = busy_idle(f.readline())
    busy0, idle0 = busy_idle(args.cpu0)
    cores = os.cpu_count()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"seconds={seconds:.3f}")
    print(f"instance_cpu_s={instance_cpu:.2f}")
    print(f"broker_cpu_s={broker_cpu:.2f}")
    print(f"machine_busy_cores={cores * (busy1 - busy0) / max(busy1 - busy0 + idle1 - idle0, 1):.2f}")
    print(f"loadavg={load}")
    if args.logs:
        last = settled(args.logs.split(","), finished)
        print(f"settled_s={last - args.t0:.3f}" if last else "settled_s=nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["ends", "wait"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group")
    parser.add_argument("--ends")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--t0", type=float)
    parser.add_argument("--pids", default="")
    parser.add_argument("--cpu0")
    parser.add_argument("--broker-pids", default="")
    parser.add_argument("--broker-ticks0", type=int, default=0)
    parser.add_argument("--logs", default="")
    args = parser.parse_args()
    if args.mode == "ends":
        ends(args)
    else:
        if not (args.group and args.ends and args.t0 and args.pids and args.cpu0):
            parser.error("wait needs --group, --ends, --t0, --pids and --cpu0")
        wait(args)


if __name__ == "__main__":
    main()
