#!/usr/bin/env bash
# Starts and stops the services that the tests and the demo need, on loopback only:
#   - a single-node Apache Kafka broker (KRaft, combined broker+controller) whose jars Maven resolves
#     from Maven Central (deploy/kafka/pom.xml), data in a temporary folder;
#   - a Redis server from Debian's redis-server package, no persistence.
# Idempotent: a service that already answers on its port is reused and never stopped by us; only what
# this script started (pid files under .run/) is stopped by `down`.
#
#   deploy/services.sh up | down | status
#   deploy/services.sh with -- CMD ...   start what is missing, run CMD, stop only what was started, exit CMD's code
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), REDIS_PORT (6379),
#              KAFKA_HEAP_OPTS (-Xms256m -Xmx512m), PORTSCAN_CACHE (.cache: Maven output, git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
CACHE=${PORTSCAN_CACHE:-$ROOT/.cache}
RUN=$ROOT/.run
POM=$ROOT/deploy/kafka/pom.xml
START_TIMEOUT=${SERVICES_START_TIMEOUT:-90}

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

now_ms() { date +%s%3N; }

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------- Kafka
kafka_lib() {
  local key
  key=$(sha256sum "$POM" | cut -c1-12)
  echo "$CACHE/kafka-$key/lib"
}

kafka_jars() {
  local lib
  lib=$(kafka_lib)
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka broker jars"
  command -v java >/dev/null || die "a JDK 17+ (java) is needed to run the Kafka broker"
  log "resolving Kafka broker jars from Maven Central into $lib"
  rm -rf "$lib.tmp"
  mvn -B -q -Dstyle.color=never -f "$POM" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib.tmp" >&2 || die "Maven could not resolve the broker jars"
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  touch "$lib/.complete"
}

kafka_up() {
  if port_open "$KAFKA_PORT"; then
    log "Kafka: reusing the broker that answers on $HOST:$KAFKA_PORT"
    return 0
  fi
  kafka_jars
  local lib dir t0 pid
  lib=$(kafka_lib)
  mkdir -p "$RUN"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/iis-portscan-kafka.XXXXXX")
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.initial.task.delay.ms=100
log.delete.delay.ms=1000
EOF
  local jopts="$KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"
  local lopts="-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties -Dkafka.logs.dir=$dir/logs"
  t0=$(now_ms)
  # shellcheck disable=SC2086
  java $jopts $lopts -cp "$lib/*" kafka.tools.StorageTool format \
    --config "$dir/server.properties" --cluster-id=4L6g3nShT-eMCtK--X86sw >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "Kafka storage format failed"; }
  # shellcheck disable=SC2086
  nohup java $jopts $lopts -cp "$lib/*" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 &
  pid=$!
  echo "$pid" >"$RUN/kafka.pid"
  echo "$dir" >"$RUN/kafka.dir"
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until port_open "$KAFKA_PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$dir/broker.log" >&2
      rm -f "$RUN/kafka.pid"
      die "the Kafka broker exited during start-up (log: $dir/broker.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$dir/broker.log" >&2
      die "the Kafka broker did not open $HOST:$KAFKA_PORT within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "Kafka: broker ready on $HOST:$KAFKA_PORT in $(( $(now_ms) - t0 )) ms (pid $pid, RSS $(rss_mb "$pid") MB, log $dir/broker.log)"
}

kafka_down() {
  [ -f "$RUN/kafka.pid" ] || { log "Kafka: nothing started by us"; return 0; }
  local pid dir
  pid=$(cat "$RUN/kafka.pid")
  dir=$(cat "$RUN/kafka.dir" 2>/dev/null || true)
  if kill -0 "$pid" 2>/dev/null; then
    log "Kafka: stopping pid $pid (RSS $(rss_mb "$pid") MB)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/kafka.pid" "$RUN/kafka.dir"
  case "$dir" in "${TMPDIR:-/tmp}"/iis-portscan-kafka.*) rm -rf "$dir" ;; esac
}

# ---------------------------------------------------------------- Redis
redis_bin() {
  if command -v redis-server >/dev/null; then command -v redis-server; return; fi
  if [ -x /usr/bin/redis-server ]; then echo /usr/bin/redis-server; return; fi
  log "Redis: installing Debian's redis-server package"
  # policy-rc.d (exit 101) keeps the package from starting a system-wide server we did not ask for.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && created=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2 \
    || { [ "$created" = 1 ] && as_root rm -f "$policy"; die "could not install redis-server"; }
  [ "$created" = 1 ] && as_root rm -f "$policy"
  command -v redis-server || echo /usr/bin/redis-server
}

redis_up() {
  if port_open "$REDIS_PORT"; then
    log "Redis: reusing the server that answers on $HOST:$REDIS_PORT"
    return 0
  fi
  local bin t0
  bin=$(redis_bin)
  mkdir -p "$RUN/redis"
  t0=$(now_ms)
  # Test/demo configuration: loopback only, no RDB snapshots, no AOF. Production: see README.
  "$bin" --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --dir "$RUN/redis" --pidfile "$RUN/redis.pid" --logfile "$RUN/redis/redis.log" >&2
  local deadline=$(( $(date +%s) + 30 ))
  until port_open "$REDIS_PORT"; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$RUN/redis/redis.log" >&2; die "Redis did not start"; }
    sleep 0.1
  done
  # The pid file appears right after the port opens; wait briefly so `down` can find it.
  for _ in $(seq 1 50); do [ -s "$RUN/redis.pid" ] && break; sleep 0.1; done
  log "Redis: server ready on $HOST:$REDIS_PORT in $(( $(now_ms) - t0 )) ms (pid $(cat "$RUN/redis.pid" 2>/dev/null))"
}

redis_down() {
  [ -f "$RUN/redis.pid" ] || { log "Redis: nothing started by us"; return 0; }
  local pid
  pid=$(cat "$RUN/redis.pid")
  if kill -0 "$pid" 2>/dev/null; then
    log "Redis: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/redis.pid"
}

status() {
  if port_open "$KAFKA_PORT"; then echo "kafka: up on $HOST:$KAFKA_PORT"; else echo "kafka: down"; fi
  if port_open "$REDIS_PORT"; then echo "redis: up on $HOST:$REDIS_PORT"; else echo "redis: down"; fi
}

case "${1:-}" in
  up) kafka_up; redis_up ;;
  down) kafka_down; redis_down ;;
  status) status ;;
  jars) kafka_jars ;;
  with)
    shift
    [ "${1:-}" = "--" ] && shift
    had_kafka=0; had_redis=0
    port_open "$KAFKA_PORT" && had_kafka=1
    port_open "$REDIS_PORT" && had_redis=1
    cleanup() {
      [ "$had_kafka" = 1 ] || kafka_down
      [ "$had_redis" = 1 ] || redis_down
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    kafka_up
    redis_up
    export PORTSCAN_BROKERS="${PORTSCAN_BROKERS:-$HOST:$KAFKA_PORT}"
    export PORTSCAN_REDIS_URL="${PORTSCAN_REDIS_URL:-redis://$HOST:$REDIS_PORT/0}"
    set +e
    "$@"
    rc=$?
    set -e
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|status|jars|with -- CMD..." >&2; exit 2 ;;
esac
