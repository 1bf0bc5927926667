#!/usr/bin/env bash
# `make demo`: generate a sample of benign IIS traffic with port scans and run the detection over it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
out=$(mktemp -d "${TMPDIR:-/tmp}/iis-portscan-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "== generating 200,000 W3CIISLog events (benign traffic plus port scans) into $out/sample.jsonl"
$BIN/iis-portscan sample --events 200000 --seed 7 --output "$out/sample.jsonl"
echo "== iis-portscan replay: the Sentinel rule over the sample (alerts as JSON lines, top 5 shown)"
$BIN/iis-portscan replay "$out/sample.jsonl" --output "$out/alerts.jsonl"
$BIN/python - "$out/alerts.jsonl" <<'PY'
import sys, orjson
alerts = [orjson.loads(line) for line in open(sys.argv[1], "rb")]
print(f"{len(alerts)} alerts (portCount >= 30 in a 10-minute bin per cIP, Computer, sIP)")
print(f"{'TimeGenerated':<25} {'cIP':<16} {'Computer':<22} {'sIP':<11} {'ports':>5} {'distinct':>8} {'conns':>6}")
for a in alerts[:5]:
    print(f"{a['TimeGenerated']:<25} {a['cIP']:<16} {a['Computer']:<22} {a['sIP']:<11} "
          f"{a['portCount']:>5} {a['DistinctPortCount']:>8} {a['ConnectionsCount']:>6}")
PY
