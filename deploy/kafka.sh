#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for the demo, the tests and the benchmarks.
#
#   deploy/kafka.sh fetch                 resolve the broker from Maven Central into the cache
#   deploy/kafka.sh start [PORT] [DIR]    format DIR (once) and start a broker on 127.0.0.1:PORT
#   deploy/kafka.sh stop  [DIR]           stop the broker that runs from DIR
#   deploy/kafka.sh status [DIR]
#
# Defaults: PORT=9092 (controller on PORT+1), DIR=.demo/kafka.
# Cache: $STREAMAE_KAFKA_CACHE (default ~/.cache/streamae/kafka-<version>).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")"
cache="${STREAMAE_KAFKA_CACHE:-$HOME/.cache/streamae/kafka-$version}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  command -v java >/dev/null || die "java not found: Kafka $version needs Java 17+"
  echo "kafka.sh: fetching Apache Kafka $version from Maven Central into $cache" >&2
  mkdir -p "$cache"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache/libs" >&2
  touch "$cache/.complete"
}

java_cmd() {  # java_cmd DIR: the JVM command line, without the main class
  JAVA_CMD=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$here/kafka/log4j2.properties" "-Dkafka.logs.dir=$1"
    -cp "$cache/libs/*")
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local port="${1:-9092}" dir="${2:-.demo/kafka}"
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  fetch
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "kafka.sh: broker already running from $dir (pid $(cat "$dir/broker.pid"))" >&2; return 0
  fi
  port_open "$port" && die "port $port is already in use"
  local cport=$((port + 1))
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
  java_cmd "$dir"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)"
    "${JAVA_CMD[@]}" kafka.tools.StorageTool format -c "$dir/server.properties" -t "$cluster_id" \
      >"$dir/format.log" 2>&1 || die "formatting $dir failed: see $dir/format.log"
  fi
  nohup "${JAVA_CMD[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  for _ in $(seq 1 120); do
    if port_open "$port"; then echo "kafka.sh: broker up on 127.0.0.1:$port (data $dir)" >&2; return 0; fi
    kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null || die "broker exited: see $dir/stdout.log and $dir/broker.log"
    sleep 0.5
  done
  die "broker did not open 127.0.0.1:$port within 60 s: see $dir/broker.log"
}

stop() {
  local dir="${1:-.demo/kafka}"
  [ -f "$dir/broker.pid" ] || return 0
  local pid; pid="$(cat "$dir/broker.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$dir/broker.pid"
  echo "kafka.sh: broker stopped ($dir)" >&2
}

status() {
  local dir="${1:-.demo/kafka}"
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "running (pid $(cat "$dir/broker.pid"))"
  else
    echo "stopped"; return 1
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  fetch) fetch ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  status) status "$@" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
