#!/usr/bin/env bash
# `make demo`: the main job on the embedded defaults, end to end on a local broker.
#   Kafka + Redis up (reused if running) -> topics -> a generated sample of benign IIS traffic with port
#   scans, produced into Kafka -> `iis-portscan worker` (RocksDB state) -> alerts printed as they arrive.
#   Everything the demo started is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
exec deploy/services.sh with -- bash -c '
set -euo pipefail
BIN=.venv/bin
run=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/iis-portscan-demo.XXXXXX")
export PORTSCAN_APP_ID=demo-$run PORTSCAN_INPUT_TOPIC=demo-$run-w3ciislog \
       PORTSCAN_ALERT_TOPIC=demo-$run-alerts PORTSCAN_DLQ_TOPIC=demo-$run-dlq PORTSCAN_INPUT_KEYED=true \
       PORTSCAN_DATA_DIR=$work/state PORTSCAN_IDLE_TIMEOUT=5s \
       PORTSCAN_ALLOWLIST=$work/allowlist.csv PORTSCAN_NOTIFY_TOPIC=demo-$run-notify
worker_pid=
cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid"; for _ in $(seq 1 150); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$worker_pid" 2>/dev/null || true
  fi
  $BIN/python -m streams.cli.demo_cleanup || true
  rm -rf "$work"
}
trap cleanup EXIT
start=$(date -u -d "-75 minutes" +%Y-%m-%dT%H:%M:00Z)
echo "== topics for app $PORTSCAN_APP_ID on $PORTSCAN_BROKERS"
$BIN/iis-portscan topics create
echo "== generating 100,000 W3CIISLog events over the hour from $start (benign traffic plus port scans)"
$BIN/iis-portscan sample --events 100000 --seed 7 --hours 1 --start "$start" --output "$work/sample.jsonl"
# The top scanner of the sample plays the approved pen tester: allowlisted, with a load balancer range
# and a health checker beside it (see README "Tuning for your SOC").
PORTSCAN_ALLOWLIST= $BIN/iis-portscan replay "$work/sample.jsonl" --output "$work/replay.jsonl" 2>/dev/null
scanner=$($BIN/python -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())[\"cIP\"])" "$work/replay.jsonl")
cat >"$work/allowlist.csv" <<CSV
field,value,reason,owner,expires
cIP,$scanner,approved pen test (demo),secops@contoso.com,$(date -u -d "+7 days" +%Y-%m-%d)
cIP,10.20.0.0/16,load balancer health probes,netops@contoso.com,
sIP,10.0.0.250,health checker target,netops@contoso.com,
CSV
echo "== allowlist $work/allowlist.csv: the scanner $scanner (pen test), a load balancer range, a health checker"
echo "== starting the worker (RocksDB state in $work/state; log $work/worker.log)"
$BIN/iis-portscan worker >"$work/worker.log" 2>&1 &
worker_pid=$!
echo "== producing the sample into $PORTSCAN_INPUT_TOPIC"
$BIN/iis-portscan produce "$work/sample.jsonl"
echo "== alerts as they arrive (early: threshold reached; final: window closed by the watermark)"
$BIN/iis-portscan alerts --pretty --idle-exit 20 | tee "$work/alerts.txt"
echo "== allowlisted: $(grep -c -F " $scanner " "$work/alerts.txt" || true) alert records from $scanner (its windows are counted, not alerted):"
grep -o "allowlist sha256:[0-9a-f]* in force: [0-9]* entries" "$work/worker.log" | tail -n 1 || true
echo "== notifications ($PORTSCAN_NOTIFY_TOPIC): one page per client per hour, the first one in full"
$BIN/iis-portscan notifications --idle-exit 5 --max 1
$BIN/iis-portscan notifications --pretty --idle-exit 5 | tail -n +2 | awk '"'"'{n[$1]++} END {for (k in n) printf "%d %s records\n", n[k], k}'"'"'
echo "== for comparison, iis-portscan replay over the same file (the daily rule'"'"'s answer):"
PORTSCAN_ALLOWLIST= $BIN/iis-portscan replay "$work/sample.jsonl" 2>&1 >/dev/null | tail -n 1
echo "== and with the allowlist, as the worker judged it:"
$BIN/iis-portscan replay "$work/sample.jsonl" --notify /dev/null 2>&1 >/dev/null | tail -n 1
grep -o "metrics .*" "$work/worker.log" | tail -n 1 || true
'
