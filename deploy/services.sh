#!/usr/bin/env bash
# Starts and stops the services that the tests and the demo need, on loopback only:
#   - a single-node Apache Kafka broker (KRaft, combined broker+controller) whose jars Maven resolves
#     from Maven Central (deploy/kafka/pom.xml), data in a temporary folder, with three client listeners:
#       PLAINTEXT  $HOST:$KAFKA_PORT
#       SASL_SSL   $HOST:$KAFKA_SASL_PORT  (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN; users made at format time)
#       SSL        $HOST:$KAFKA_MTLS_PORT  (client certificate required)
#     (inter-broker and controller traffic stays PLAINTEXT);
#   - a Redis server from Debian's redis-server package, no persistence, with a TLS port and an ACL user.
# TLS material (a throwaway CA, a server certificate for 127.0.0.1/localhost, a client certificate; PEM) and
# random test passwords are made with openssl on first start and kept under .run/kafka/tls/. Ready client
# settings, absolute paths:
#   .run/kafka/client-scram.properties (SCRAM-SHA-512), client-scram256.properties, client-plain.properties,
#   client-mtls.properties   librdkafka properties: --kafka-config-file, kcat -F
#   .run/kafka/listeners.env                        the listeners' addresses (shell variables)
#   .run/redis/client.env                           PORTSCAN_REDIS_* for the TLS port and the ACL user
# Idempotent: a service that already answers on its port is reused and never stopped by us; only what
# this script started (pid files under .run/, checked against the process `ss` shows on the port) is
# stopped by `down`. A broker or Redis this script started with other listeners or certificates (e.g. by
# an older version of it, PLAINTEXT only) is restarted; one it did not start is reused, with a warning
# when it lacks the secure listeners. One `up`/`down` runs at a time (flock on .run/services.lock).
#
#   deploy/services.sh up | down | status
#   deploy/services.sh with -- CMD ...   start what is missing, run CMD, stop only what was started, exit CMD's code
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_SASL_PORT (9094),
#              KAFKA_MTLS_PORT (9095), REDIS_PORT (6379), REDIS_TLS_PORT (6380),
#              KAFKA_HEAP_OPTS (-Xms256m -Xmx512m), PORTSCAN_CACHE (.cache: Maven output, git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094}
KAFKA_MTLS_PORT=${KAFKA_MTLS_PORT:-9095}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_TLS_PORT=${REDIS_TLS_PORT:-6380}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
CACHE=${PORTSCAN_CACHE:-$ROOT/.cache}
RUN=$ROOT/.run
TLS=$RUN/kafka/tls
POM=$ROOT/deploy/kafka/pom.xml
START_TIMEOUT=${SERVICES_START_TIMEOUT:-90}
SASL_USER=portscan
REDIS_USER=portscan
# Bump when the listeners or users change, so that `up` restarts a broker/Redis an older script started.
SECURE_LAYOUT=3

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

now_ms() { date +%s%3N; }

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Is the pid in FILE alive and running a command line containing WHAT? (a recycled pid is not ours)
ours() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# The pid listening on $HOST:PORT, if `ss` can tell (empty otherwise).
listener_pid() {
  command -v ss >/dev/null || return 0
  { ss -Hltnp "sport = :$1" 2>/dev/null || true; } | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1 || true
}

# One `up`/`down` at a time: two racing `up`s once left .run/kafka.pid naming a broker that had died at
# start-up (port taken) while the other one served, so that `down` could not stop it.
lock() {
  command -v flock >/dev/null || return 0
  mkdir -p "$RUN"
  exec 9>"$RUN/services.lock"
  flock -w "$START_TIMEOUT" 9 || die "another deploy/services.sh is still starting or stopping services"
}
unlock() { command -v flock >/dev/null && exec 9>&- || true; }

# ---------------------------------------------------------------- TLS material and test credentials
# A throwaway CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost) used by Kafka and Redis, a client
# certificate for the mTLS listener; EC P-256 keys (fast to make), PKCS#8 PEM, which Kafka 4 reads.
tls_issue() { # NAME CN EXTENSIONS
  local name=$1 cn=$2 ext=$3
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/$name.key" 2>/dev/null
  openssl req -new -key "$TLS/$name.key" -subj "/O=iis-portscan test/CN=$cn" -out "$TLS/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" 'basicConstraints=critical,CA:FALSE' 'subjectKeyIdentifier=hash' \
    'authorityKeyIdentifier=keyid,issuer' >"$TLS/$name.ext"
  openssl x509 -req -in "$TLS/$name.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days 825 -sha256 -extfile "$TLS/$name.ext" \
    -out "$TLS/$name.pem" 2>/dev/null
  rm -f "$TLS/$name.csr" "$TLS/$name.ext"
}

tls_material() {
  if [ -f "$TLS/.complete" ] && openssl x509 -checkend 86400 -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is needed to make the test TLS certificates"
  local t0
  t0=$(now_ms)
  rm -rf "$TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$TLS/ca.key" -subj "/O=iis-portscan test/CN=iis-portscan throwaway test CA" \
    -days 3650 -sha256 -addext 'basicConstraints=critical,CA:TRUE' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign' -out "$TLS/ca.pem" 2>/dev/null
  tls_issue server localhost $'subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth'
  tls_issue client portscan-client $'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth'
  cat "$TLS/server.key" "$TLS/server.pem" >"$TLS/server-keystore.pem" # Kafka's PEM key store
  # Test passwords: random, so that a test can look for them in output; hex, so no quoting is needed.
  {
    echo "SCRAM_PASSWORD=scram-$(openssl rand -hex 12)"
    echo "PLAIN_PASSWORD=plain-$(openssl rand -hex 12)"
    echo "REDIS_PASSWORD=redis-$(openssl rand -hex 12)"
  } >"$TLS/secrets.env"
  chmod 600 "$TLS"/*.key "$TLS/server-keystore.pem" "$TLS/secrets.env"
  touch "$TLS/.complete"
  log "TLS: throwaway CA, server and client certificates and test passwords made in $TLS in $(( $(now_ms) - t0 )) ms"
}

secret() { sed -n "s/^$1=//p" "$TLS/secrets.env"; }

# What a running broker/Redis must have been started with to be reused: ports, layout, certificates, users.
secure_signature() {
  { echo "$SECURE_LAYOUT $*"; cat "$TLS/ca.pem" "$TLS/server.pem" "$TLS/secrets.env"; } | sha256sum | cut -c1-16
}

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

# Is the broker answering on $KAFKA_PORT one this script started? The process listening there, if `ss`
# shows it: a kafka.Kafka with this checkout's log4j2 file and a server.properties in a folder of ours (the
# pid file is then set right); else the pid file and its server.properties.
kafka_ours() {
  local pid props
  pid=$(listener_pid "$KAFKA_PORT")
  if [ -z "$pid" ]; then
    ours "$RUN/kafka.pid" kafka.Kafka \
      && grep -q "^listeners=PLAINTEXT://$HOST:$KAFKA_PORT," "$(cat "$RUN/kafka.dir" 2>/dev/null)/server.properties" 2>/dev/null
    return
  fi
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null \
    | grep -qx -- "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties" || return 1
  props=$(tr '\0' '\n' <"/proc/$pid/cmdline" | tail -n 1)
  case "$props" in "${TMPDIR:-/tmp}"/iis-portscan-kafka.*/server.properties) ;; *) return 1 ;; esac
  [ "$(cat "$RUN/kafka.pid" 2>/dev/null)" = "$pid" ] && return 0
  log "Kafka: .run/kafka.pid did not name the broker on $HOST:$KAFKA_PORT; it is pid $pid (${props%/*})"
  echo "$pid" >"$RUN/kafka.pid"
  echo "${props%/*}" >"$RUN/kafka.dir"
  rm -f "$RUN/kafka.sig"
}

kafka_signature() { secure_signature "$KAFKA_PORT $KAFKA_CONTROLLER_PORT $KAFKA_SASL_PORT $KAFKA_MTLS_PORT"; }

# librdkafka client properties for the secure listeners (bootstrap.servers is given with --brokers).
kafka_client_files() {
  local dir=$RUN/kafka scram plain
  scram=$(secret SCRAM_PASSWORD)
  plain=$(secret PLAIN_PASSWORD)
  mkdir -p "$dir"
  (
    umask 077
    sasl_file() { # FILE MECHANISM PASSWORD
      printf '%s\n' "# iis-portscan test broker, SASL_SSL listener: --brokers $HOST:$KAFKA_SASL_PORT" \
        "security.protocol=SASL_SSL" "sasl.mechanism=$2" "sasl.username=$SASL_USER" "sasl.password=$3" \
        "ssl.ca.location=$TLS/ca.pem" >"$dir/$1.tmp"
      mv "$dir/$1.tmp" "$dir/$1"
    }
    sasl_file client-scram.properties SCRAM-SHA-512 "$scram"
    sasl_file client-scram256.properties SCRAM-SHA-256 "$scram"
    sasl_file client-plain.properties PLAIN "$plain"
    printf '%s\n' "# iis-portscan test broker, SSL listener with client certificates: --brokers $HOST:$KAFKA_MTLS_PORT" \
      "security.protocol=SSL" "ssl.ca.location=$TLS/ca.pem" "ssl.certificate.location=$TLS/client.pem" \
      "ssl.key.location=$TLS/client.key" >"$dir/client-mtls.properties.tmp"
    mv "$dir/client-mtls.properties.tmp" "$dir/client-mtls.properties"
    printf '%s\n' "KAFKA_PLAINTEXT=$HOST:$KAFKA_PORT" "KAFKA_SASL_SSL=$HOST:$KAFKA_SASL_PORT" \
      "KAFKA_MTLS=$HOST:$KAFKA_MTLS_PORT" "KAFKA_SASL_USER=$SASL_USER" >"$dir/listeners.env"
  )
}

kafka_up() {
  tls_material
  local sig
  sig=$(kafka_signature)
  if port_open "$KAFKA_PORT"; then
    if kafka_ours; then
      if [ "$(cat "$RUN/kafka.sig" 2>/dev/null)" = "$sig" ]; then
        kafka_client_files
        log "Kafka: reusing the broker we started on $HOST:$KAFKA_PORT (SASL_SSL $KAFKA_SASL_PORT, SSL $KAFKA_MTLS_PORT)"
        return 0
      fi
      log "Kafka: the broker we started (pid $(cat "$RUN/kafka.pid")) has other listeners or certificates than this script makes: restarting it"
      kafka_down
    else
      if port_open "$KAFKA_SASL_PORT" && port_open "$KAFKA_MTLS_PORT"; then
        log "Kafka: reusing the broker that answers on $HOST:$KAFKA_PORT (not started by us: .run/kafka/client-*.properties are not written for its SASL_SSL/SSL listeners on $KAFKA_SASL_PORT/$KAFKA_MTLS_PORT)"
      else
        log "Kafka: WARNING: reusing the broker on $HOST:$KAFKA_PORT, which this script did not start and which has no SASL_SSL listener on $KAFKA_SASL_PORT or no SSL listener on $KAFKA_MTLS_PORT: the TLS/SASL tests will fail. Stop that broker and run 'deploy/services.sh up' to get one with all listeners."
      fi
      return 0
    fi
  fi
  local port
  for port in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_MTLS_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$port" && die "port $HOST:$port is taken by another program (set KAFKA_PORT / KAFKA_SASL_PORT / KAFKA_MTLS_PORT / KAFKA_CONTROLLER_PORT)"
  done
  kafka_jars
  local lib dir t0 pid scram plain
  lib=$(kafka_lib)
  scram=$(secret SCRAM_PASSWORD)
  plain=$(secret PLAIN_PASSWORD)
  mkdir -p "$RUN"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/iis-portscan-kafka.XXXXXX")
  (umask 077; cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,SSL://$HOST:$KAFKA_MTLS_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,SSL://$HOST:$KAFKA_MTLS_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$plain";
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
  )
  local jopts="$KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"
  local lopts="-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties -Dkafka.logs.dir=$dir/logs"
  t0=$(now_ms)
  # SCRAM credentials go into the cluster metadata at format time (KRaft has no ZooKeeper to hold them).
  # shellcheck disable=SC2086
  java $jopts $lopts -cp "$lib/*" kafka.tools.StorageTool format \
    --config "$dir/server.properties" --cluster-id=4L6g3nShT-eMCtK--X86sw \
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$scram]" \
    --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$scram]" >"$dir/format.log" 2>&1 \
    || { cat "$dir/format.log" >&2; die "Kafka storage format failed"; }
  # Its own session (setsid): a signal to the caller's process group (a CI step or a shell that ends and
  # is cleaned up) must not take the broker down with it; `down` stops it by pid.
  # shellcheck disable=SC2086
  setsid java $jopts $lopts -cp "$lib/*" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 9>&- </dev/null &
  pid=$!
  echo "$pid" >"$RUN/kafka.pid"
  echo "$dir" >"$RUN/kafka.dir"
  echo "$sig" >"$RUN/kafka.sig"
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until port_open "$KAFKA_PORT" && port_open "$KAFKA_SASL_PORT" && port_open "$KAFKA_MTLS_PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$dir/broker.log" >&2
      rm -f "$RUN/kafka.pid" "$RUN/kafka.sig"
      die "the Kafka broker exited during start-up (log: $dir/broker.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$dir/broker.log" >&2
      die "the Kafka broker did not open $HOST:$KAFKA_PORT, $KAFKA_SASL_PORT and $KAFKA_MTLS_PORT within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  kafka_client_files
  log "Kafka: broker ready on $HOST:$KAFKA_PORT (PLAINTEXT), $KAFKA_SASL_PORT (SASL_SSL), $KAFKA_MTLS_PORT (SSL, client certificates) in $(( $(now_ms) - t0 )) ms (pid $pid, RSS $(rss_mb "$pid") MB, log $dir/broker.log)"
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
  rm -f "$RUN/kafka.pid" "$RUN/kafka.dir" "$RUN/kafka.sig"
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

# Is the Redis answering on $REDIS_PORT one this script started (its folder is .run/redis)?
redis_ours() {
  local pid
  pid=$(listener_pid "$REDIS_PORT")
  if [ -z "$pid" ]; then
    ours "$RUN/redis.pid" "redis-server.*:$REDIS_PORT"
    return
  fi
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$RUN/redis" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server || return 1
  [ "$(cat "$RUN/redis.pid" 2>/dev/null)" = "$pid" ] && return 0
  echo "$pid" >"$RUN/redis.pid"
  rm -f "$RUN/redis.sig"
}

redis_signature() { secure_signature "redis $REDIS_PORT $REDIS_TLS_PORT"; }

# The worker's settings for the TLS port and the ACL user (source it, or pass it to `env`).
redis_client_files() {
  local password
  password=$(secret REDIS_PASSWORD)
  mkdir -p "$RUN/redis"
  (
    umask 077
    printf '%s\n' "$password" >"$RUN/redis/password"
    printf '%s\n' "PORTSCAN_STORE=rediss://$HOST:$REDIS_TLS_PORT/0" "PORTSCAN_REDIS_USERNAME=$REDIS_USER" \
      "PORTSCAN_REDIS_PASSWORD_FILE=$RUN/redis/password" "PORTSCAN_REDIS_CA=$TLS/ca.pem" \
      >"$RUN/redis/client.env"
  )
}

redis_up() {
  tls_material
  local sig
  sig=$(redis_signature)
  if port_open "$REDIS_PORT"; then
    if redis_ours; then
      if [ "$(cat "$RUN/redis.sig" 2>/dev/null)" = "$sig" ]; then
        redis_client_files
        log "Redis: reusing the server we started on $HOST:$REDIS_PORT (TLS $REDIS_TLS_PORT)"
        return 0
      fi
      log "Redis: the server we started (pid $(cat "$RUN/redis.pid")) has no TLS port or ACL user like this script makes: restarting it"
      redis_down
    else
      if port_open "$REDIS_TLS_PORT"; then
        log "Redis: reusing the server that answers on $HOST:$REDIS_PORT (not started by us: .run/redis/client.env is not written for its TLS port $REDIS_TLS_PORT)"
      else
        log "Redis: WARNING: reusing the server on $HOST:$REDIS_PORT, which this script did not start and which has no TLS port on $REDIS_TLS_PORT: the Redis TLS/ACL tests will fail. Stop that server and run 'deploy/services.sh up'."
      fi
      return 0
    fi
  fi
  for port in "$REDIS_PORT" "$REDIS_TLS_PORT"; do
    port_open "$port" && die "port $HOST:$port is taken by another program (set REDIS_PORT / REDIS_TLS_PORT)"
  done
  local bin t0 password
  bin=$(redis_bin)
  password=$(secret REDIS_PASSWORD)
  mkdir -p "$RUN/redis"
  # Test/demo configuration: loopback only, no RDB snapshots, no AOF. Production: see README. A file, not
  # arguments, so the ACL user's password is not in `ps`. The default user stays open on the plain port
  # for the other tests; the ACL user may touch only the job's keys (iis-portscan:*) with the store's commands.
  (umask 077; cat >"$RUN/redis/redis.conf" <<EOF
bind $HOST
port $REDIS_PORT
tls-port $REDIS_TLS_PORT
tls-cert-file $TLS/server.pem
tls-key-file $TLS/server.key
tls-ca-cert-file $TLS/ca.pem
tls-auth-clients optional
save ""
appendonly no
daemonize yes
dir $RUN/redis
pidfile $RUN/redis.pid
logfile $RUN/redis/redis.log
user $REDIS_USER on >$password resetkeys ~iis-portscan:* resetchannels -@all +@connection +select +get +set +del +unlink +exists +pexpire +hset +hmget +hgetall +hlen +zadd +zrange +zrangebyscore +zremrangebyscore +scan +hscan +incr +incrby +mget +watch +unwatch +multi +exec +discard
EOF
  )
  t0=$(now_ms)
  rm -f "$RUN/redis.pid"
  "$bin" "$RUN/redis/redis.conf" >&2 9>&-  # the daemon must not hold our lock
  local deadline=$(( $(date +%s) + 30 ))
  until port_open "$REDIS_PORT" && port_open "$REDIS_TLS_PORT"; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$RUN/redis/redis.log" >&2; die "Redis did not start"; }
    sleep 0.1
  done
  # The pid file appears right after the port opens; wait briefly so `down` can find it.
  for _ in $(seq 1 50); do [ -s "$RUN/redis.pid" ] && break; sleep 0.1; done
  echo "$sig" >"$RUN/redis.sig"
  redis_client_files
  log "Redis: server ready on $HOST:$REDIS_PORT, TLS on $REDIS_TLS_PORT (user $REDIS_USER, .run/redis/client.env) in $(( $(now_ms) - t0 )) ms (pid $(cat "$RUN/redis.pid" 2>/dev/null))"
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
  rm -f "$RUN/redis.pid" "$RUN/redis.sig"
}

status() {
  local p
  if port_open "$KAFKA_PORT"; then
    p=""
    port_open "$KAFKA_SASL_PORT" && p="$p, SASL_SSL $KAFKA_SASL_PORT"
    port_open "$KAFKA_MTLS_PORT" && p="$p, SSL $KAFKA_MTLS_PORT"
    echo "kafka: up on $HOST:$KAFKA_PORT$p"
  else echo "kafka: down"; fi
  if port_open "$REDIS_PORT"; then
    p=""
    port_open "$REDIS_TLS_PORT" && p=", TLS $REDIS_TLS_PORT"
    echo "redis: up on $HOST:$REDIS_PORT$p"
  else echo "redis: down"; fi
}

case "${1:-}" in
  up) lock; kafka_up; redis_up ;;
  down) lock; kafka_down; redis_down ;;
  status) status ;;
  jars) kafka_jars ;;
  with)
    shift
    [ "${1:-}" = "--" ] && shift
    lock
    had_kafka=0; had_redis=0
    port_open "$KAFKA_PORT" && had_kafka=1
    port_open "$REDIS_PORT" && had_redis=1
    cleanup() {
      lock
      [ "$had_kafka" = 1 ] || kafka_down
      [ "$had_redis" = 1 ] || redis_down
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    kafka_up
    redis_up
    unlock
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
