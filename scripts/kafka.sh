#!/usr/bin/env bash
# A real Apache Kafka cluster on loopback for the tests and for trying the
# engine against a real broker:
#
#   scripts/kafka.sh start [--brokers N]   # N = 1 (default) or 3; prints export lines
#   scripts/kafka.sh status                # exit 0 when running and answering
#   scripts/kafka.sh env                   # the export lines of the running cluster
#   scripts/kafka.sh stop
#
# A second, private cluster (its own ports, storage and certificates, from the
# same cached jars) runs beside it under an instance name, for tests that
# stop, pause or restart brokers without disturbing the shared one:
#
#   scripts/kafka.sh --instance NAME start [--brokers N]
#   scripts/kafka.sh --instance NAME stop-node ID    # SIGTERM one node (clean shutdown)
#   scripts/kafka.sh --instance NAME kill-node ID    # SIGKILL one node
#   scripts/kafka.sh --instance NAME start-node ID   # start a stopped node on its storage
#   scripts/kafka.sh --instance NAME pid ID          # the node's process id (SIGSTOP/SIGCONT)
#   scripts/kafka.sh --instance NAME stop            # and `remove`: stop and delete its files
#
# `eval "$(scripts/kafka.sh start)"` sets CRMSTREAM_TEST_KAFKA (the PLAINTEXT
# bootstrap address) and the SASL_SSL settings (CRMSTREAM_TEST_KAFKA_SASL*,
# CRMSTREAM_TEST_KAFKA_CA) that the tests read; the same lines are in
# $CRMSTREAM_BROKER_HOME/run/env.
#
# The Kafka jars come from Maven Central once (org.apache.kafka:kafka_2.13)
# into a git-ignored cache, $CRMSTREAM_BROKER_HOME (default .cache/kafka); Java
# and Maven are installed from Debian when missing. Every start when nothing
# is running formats fresh KRaft storage: each node is a combined broker and
# controller (static quorum), with two listeners on 127.0.0.1: PLAINTEXT, and
# SASL_SSL with SCRAM-SHA-512 behind a CA and broker certificate generated for
# this start. Logs: $CRMSTREAM_BROKER_HOME/run/node-<id>/server.log.
#
# Knobs: CRMSTREAM_BROKER_VERSION (default 3.9.2: the newest Kafka whose
# SCRAM login accepts librdkafka 2.0.2, see README), CRMSTREAM_BROKER_HEAP
# (default "-Xms128m -Xmx512m" per node), CRMSTREAM_BROKER_HOME. (Not
# CRMSTREAM_KAFKA_*: the engine reads those as librdkafka properties.)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="${CRMSTREAM_BROKER_VERSION:-3.9.2}"
home="${CRMSTREAM_BROKER_HOME:-$root/.cache/kafka}"
heap="${CRMSTREAM_BROKER_HEAP:--Xms128m -Xmx512m}"
dist="$home/kafka_2.13-$version"
instance=""
if [ "${1:-}" = "--instance" ]; then
  instance="${2:?--instance needs a name}"
  shift 2
  [[ "$instance" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "kafka.sh: bad instance name: $instance" >&2; exit 2; }
fi
run="$home/run${instance:+-$instance}"
scram_user="crmstream"

log() { echo "kafka.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

ensure_tools() {
  local need=()
  command -v java > /dev/null || need+=(default-jdk-headless)
  if [ ! -f "$dist/.complete" ] && ! command -v mvn > /dev/null; then need+=(maven); fi
  command -v openssl > /dev/null || need+=(openssl)
  command -v kcat > /dev/null || need+=(kcat)
  command -v ss > /dev/null || need+=(iproute2)
  [ ${#need[@]} -eq 0 ] || "$root/scripts/install-deps.sh" "${need[@]}"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major%%.*}" -ge 17 ] 2> /dev/null || die "Kafka $version needs Java 17 or newer (found: ${major:-none})"
}

# The slf4j binding the broker logs through, as its distribution ships it:
# log4j2 from Kafka 4.0 on, reload4j (log4j 1) before.
logging_dependencies() {
  if [ "${version%%.*}" -ge 4 ]; then
    printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' \
      org.apache.logging.log4j log4j-slf4j-impl 2.25.5
  else
    printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' \
      org.slf4j slf4j-reload4j 1.7.36 ch.qos.reload4j reload4j 1.2.25
  fi
}

# The broker's jars, once: a pom naming kafka_2.13 and the logging binding,
# resolved by Maven into $dist/libs.
fetch_kafka() {
  [ -f "$dist/.complete" ] && return 0
  log "fetching Apache Kafka $version (org.apache.kafka:kafka_2.13) from Maven Central into $dist"
  rm -rf "$dist"
  mkdir -p "$dist"
  cat > "$dist/pom.xml" << EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>crmstream.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$version</version>
    </dependency>
$(logging_dependencies)
  </dependencies>
</project>
EOF
  # Maven's output goes to stderr: stdout carries only the export lines.
  (cd "$dist" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$dist/libs") 1>&2 || die "mvn could not fetch Kafka $version"
  ls "$dist/libs/kafka_2.13-$version.jar" > /dev/null || die "kafka_2.13-$version.jar missing after mvn"
  touch "$dist/.complete"
}

# `count` free TCP ports on loopback, below the kernel's ephemeral range:
# the nodes bind them seconds after the choice (storage formatting, JVM
# start), and in that window any outgoing connection or port-0 listener (an
# embedded cluster of a test running beside) may be given a port of the
# ephemeral range, which then refuses the node's bind.
free_ports() {
  local count="$1" low=10000 high=32768 ephemeral found=()
  read -r ephemeral _ < /proc/sys/net/ipv4/ip_local_port_range 2> /dev/null || ephemeral=32768
  # A kernel whose ephemeral range starts low leaves no such room.
  if [ "$ephemeral" -gt 12000 ]; then high="$ephemeral"; else low=20000 high=45000; fi
  local span=$((high - low)) port
  port=$((low + RANDOM % span))
  while [ ${#found[@]} -lt "$count" ]; do
    port=$((port + 1))
    [ "$port" -lt "$high" ] || port="$low"
    [ -z "$(ss -Htan "sport = :$port")" ] && found+=("$port")
  done
  echo "${found[@]}"
}

make_certs() {
  local dir="$run/certs"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=crmstream test CA" \
      -keyout ca.key -out ca.pem 2> /dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key \
      -out broker.csr 2> /dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.pem 2> /dev/null
    # Kafka reads a PEM keystore: the PKCS#8 key, then the certificate chain.
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker-pkcs8.key
    cat broker-pkcs8.key broker.pem ca.pem > broker-keystore.pem
    chmod 600 ./*.key broker-keystore.pem
  )
}

write_node_config() {
  local id="$1" plain="$2" sasl="$3" controller="$4" voters="$5" brokers="$6"
  local dir="$run/node-$id" rf=1 min_isr=1
  # With three nodes the internal topics are replicated so that one node can
  # be stopped (broker-down and leader-move tests); with one, factor 1.
  if [ "$brokers" -ge 3 ]; then
    rf=3
    min_isr=2
  fi
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" << EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$plain,SASL_SSL://127.0.0.1:$sasl,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$plain,SASL_SSL://127.0.0.1:$sasl
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$run/certs/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$run/certs/ca.pem
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
# The cleaner looks for dirty compacted logs every second (default 15 s), so
# a compaction test needs no long wait.
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [ "${version%%.*}" -ge 4 ]; then
    printf 'share.coordinator.state.topic.replication.factor=%s\nshare.coordinator.state.topic.min.isr=%s\n' \
      "$rf" "$min_isr" >> "$dir/server.properties"
  fi
  cat > "$dir/log4j2.properties" << EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
EOF
  cat > "$dir/log4j.properties" << EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# The JVM options of a node (its heap, its log configuration: log4j2 for
# Kafka 4, log4j 1 before) into the array `jvm`.
jvm_options() {
  local dir="$1"
  # shellcheck disable=SC2206  # $heap is a list of JVM options
  jvm=($heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dlog4j.configuration="file:$dir/log4j.properties"
    -Dkafka.logs.dir="$dir"
    -cp "$dist/libs/*")
}

# The ids of the nodes started (those with a pid file).
node_ids() {
  local f
  for f in "$run"/node-*/pid; do
    if [ -f "$f" ]; then basename "$(dirname "$f")" | cut -d- -f2; fi
  done
}

node_alive() {
  local pid
  pid="$(cat "$run/node-$1/pid" 2> /dev/null)" || return 1
  kill -0 "$pid" 2> /dev/null
}

sasl_args() {
  # shellcheck disable=SC1091
  . "$run/env"
  echo "-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512" \
    "-X sasl.username=$CRMSTREAM_TEST_KAFKA_SASL_USERNAME" \
    "-X sasl.password=$CRMSTREAM_TEST_KAFKA_SASL_PASSWORD -X ssl.ca.location=$CRMSTREAM_TEST_KAFKA_CA"
}

# True when every node's process lives and the PLAINTEXT listener answers
# metadata with every broker registered.
answering() {
  [ -f "$run/env" ] || return 1
  local id brokers=0
  for id in $(node_ids); do
    node_alive "$id" || return 1
    brokers=$((brokers + 1))
  done
  [ "$brokers" -gt 0 ] || return 1
  # shellcheck disable=SC1091
  . "$run/env"
  kcat -L -b "$CRMSTREAM_TEST_KAFKA" -m 3 2> /dev/null | grep -q "^ $brokers brokers:"
}

# The SASL_SSL listener with the SCRAM user, through librdkafka (kcat).
scram_answers() {
  # shellcheck disable=SC2046
  kcat -L -b "$CRMSTREAM_TEST_KAFKA_SASL" $(sasl_args) -m 5 2> /dev/null | grep -q "brokers:"
}

# Waits for a node's process to end: a clean shutdown takes a few seconds;
# one that hangs past 30 s is killed.
wait_exit() {
  local pid="$1" waited=0
  while kill -0 "$pid" 2> /dev/null && [ $waited -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2> /dev/null; then
    log "node pid $pid did not stop within 30 s; killing it"
    kill -KILL "$pid" 2> /dev/null || true
  fi
}

stop_nodes() {
  local id pid pids=()
  for id in $(node_ids); do
    if node_alive "$id"; then
      pid="$(cat "$run/node-$id/pid")"
      kill -TERM "$pid" 2> /dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do wait_exit "$pid"; done
  rm -f "$run"/node-*/pid
  [ ${#pids[@]} -eq 0 ] || log "stopped ${#pids[@]} node(s)"
}

# The JVM of node `id` on its configuration and storage, in the background.
launch_node() {
  local id="$1" jvm
  jvm_options "$run/node-$id"
  # setsid: the nodes outlive this script and do not get its terminal's signals.
  (
    cd "$run/node-$id"
    setsid java "${jvm[@]}" kafka.Kafka "$run/node-$id/server.properties" \
      >> "$run/node-$id/stdout.log" 2>&1 < /dev/null &
    echo $! > "$run/node-$id/pid"
  )
}

valid_node() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ -f "$run/node-$1/server.properties" ] ||
    die "no node '${1:-}' in $run"
}

# Ends one node with `signal` and waits for it (bounded: 30 s, then SIGKILL).
stop_node() {
  local id="$1" signal="$2" pid
  valid_node "$id"
  if ! node_alive "$id"; then
    rm -f "$run/node-$id/pid"
    log "node $id was not running"
    return 0
  fi
  pid="$(cat "$run/node-$id/pid")"
  kill "-$signal" "$pid" 2> /dev/null || true
  kill -CONT "$pid" 2> /dev/null || true  # a paused node could not act on SIGTERM
  wait_exit "$pid"
  rm -f "$run/node-$id/pid"
  log "node $id stopped ($signal)"
}

# Starts a stopped node again on its storage; waits (bounded) until the
# cluster answers metadata with every node registered.
start_node() {
  local id="$1" waited=0
  valid_node "$id"
  node_alive "$id" && die "node $id is already running"
  launch_node "$id"
  until answering; do
    node_alive "$id" || die "node $id exited during start-up (logs: $run/node-$id/)"
    waited=$((waited + 1))
    [ $waited -lt 240 ] || die "node $id did not rejoin within 120 s (log: $run/node-$id/server.log)"
    sleep 0.5
  done
  log "node $id running again"
}

start() {
  local brokers=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers)
        brokers="${2:?--brokers needs a count}"
        shift 2
        ;;
      *) die "unknown option for start: $1" ;;
    esac
  done
  [ "$brokers" = 1 ] || [ "$brokers" = 3 ] || die "--brokers must be 1 or 3"

  if answering; then
    local running
    running="$(node_ids | wc -w)"
    [ "$running" -eq "$brokers" ] ||
      die "a cluster of $running broker(s) is running; 'scripts/kafka.sh stop' first"
    log "already running (Kafka $(cat "$run/version"))"
    cat "$run/env"
    return 0
  fi
  stop_nodes

  ensure_tools
  fetch_kafka
  rm -rf "$run"
  mkdir -p "$run"
  make_certs

  local ports voters="" i plain sasl controller jvm
  read -r -a ports <<< "$(free_ports $((3 * brokers)))"
  for ((i = 1; i <= brokers; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:${ports[3 * i - 1]}"
  done
  local bootstrap="" sasl_bootstrap=""
  for ((i = 1; i <= brokers; i++)); do
    plain="${ports[3 * i - 3]}"
    sasl="${ports[3 * i - 2]}"
    controller="${ports[3 * i - 1]}"
    write_node_config "$i" "$plain" "$sasl" "$controller" "$voters" "$brokers"
    bootstrap+="${bootstrap:+,}127.0.0.1:$plain"
    sasl_bootstrap+="${sasl_bootstrap:+,}127.0.0.1:$sasl"
  done

  # One cluster id for all nodes: 16 random bytes, base64url as Kafka's Uuid.
  local cluster_id password
  cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  cluster_id="A${cluster_id:1}"
  password="$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')"
  umask 077
  cat > "$run/env" << EOF
export CRMSTREAM_TEST_KAFKA=$bootstrap
export CRMSTREAM_TEST_KAFKA_BROKERS=$brokers
export CRMSTREAM_TEST_KAFKA_SASL=$sasl_bootstrap
export CRMSTREAM_TEST_KAFKA_SASL_USERNAME=$scram_user
export CRMSTREAM_TEST_KAFKA_SASL_PASSWORD=$password
export CRMSTREAM_TEST_KAFKA_CA=$run/certs/ca.pem
EOF
  umask 022
  echo "$bootstrap" > "$run/bootstrap"
  echo "$version" > "$run/version"

  log "formatting KRaft storage for $brokers node(s) (cluster $cluster_id)"
  for ((i = 1; i <= brokers; i++)); do
    # The SCRAM user goes into the bootstrap metadata, so it exists from the
    # first start.
    jvm_options "$run/node-$i"
    java "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$run/node-$i/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=$scram_user,password=$password]" \
      > "$run/node-$i/format.log" 2>&1 || {
      cat "$run/node-$i/format.log" >&2
      die "formatting node $i failed"
    }
  done
  for ((i = 1; i <= brokers; i++)); do
    launch_node "$i"
  done

  # Ready when both listeners answer metadata with every broker; bounded.
  local waited=0
  until answering; do
    for ((i = 1; i <= brokers; i++)); do
      if ! node_alive "$i"; then
        # Its first errors say why (a port taken, a bad setting); the tail
        # shows only the shutdown.
        grep -h -m 10 -E "ERROR|FATAL|Exception" "$run/node-$i/stdout.log" \
          "$run/node-$i/server.log" >&2 2> /dev/null || true
        tail -n 30 "$run/node-$i/stdout.log" "$run/node-$i/server.log" >&2 2> /dev/null || true
        stop_nodes
        die "node $i exited during start-up (logs: $run/node-$i/)"
      fi
    done
    waited=$((waited + 1))
    if [ $waited -ge 240 ]; then
      stop_nodes
      die "the cluster did not answer metadata within 120 s (logs: $run/node-*/server.log)"
    fi
    sleep 0.5
  done
  # librdkafka before 2.6.1 (Debian 12 ships 2.0.2) repeats the client nonce
  # in its final SCRAM message; Kafka 3.8.1-3.9 tolerate it, Kafka 4 refuses
  # the login. Say so instead of failing: PLAINTEXT still works.
  if ! scram_answers; then
    log "WARNING: the SASL_SSL listener refuses this machine's librdkafka with SCRAM-SHA-512;" \
      "librdkafka < 2.6.1 needs Kafka <= 3.9 for SCRAM (see README)"
  fi
  log "Kafka $version running: PLAINTEXT $bootstrap, SASL_SSL (SCRAM-SHA-512, user $scram_user) $sasl_bootstrap; CA $run/certs/ca.pem"
  cat "$run/env"
}

case "${1:-}" in
  start)
    shift
    start "$@"
    ;;
  stop) stop_nodes ;;
  remove)
    [ -n "$instance" ] || die "remove: only for an --instance (the shared cluster is stopped with stop)"
    stop_nodes
    rm -rf "$run"
    ;;
  stop-node) stop_node "${2:-}" TERM ;;
  kill-node) stop_node "${2:-}" KILL ;;
  start-node) start_node "${2:-}" ;;
  pid)
    valid_node "${2:-}"
    node_alive "$2" || die "node $2 is not running"
    cat "$run/node-$2/pid"
    ;;
  status)
    if answering; then
      log "running: Kafka $(cat "$run/version"), $(node_ids | wc -w) node(s)"
      cat "$run/env"
    else
      log "not running"
      exit 1
    fi
    ;;
  env)
    answering || die "not running"
    cat "$run/env"
    ;;
  *)
    echo "usage: scripts/kafka.sh [--instance NAME] start [--brokers 1|3] | stop | status | env |" \
      "stop-node ID | kill-node ID | start-node ID | pid ID | remove" >&2
    exit 2
    ;;
esac
