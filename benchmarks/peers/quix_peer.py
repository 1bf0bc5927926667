"""The Quix Streams peer of `make bench`: the Sentinel rule "High count of connections by client IP on
many ports" as a Quix Streams application.

Tumbling 10-minute event-time windows (TimeGenerated, through the topic's timestamp extractor) per
(cIP, Computer, sIP), grace 2 minutes, `reduce` into counts and sets (every distinct port; the nine
string sets of the rule, each its 128 smallest values, enriched with streams.core.enrich as our worker
does), emitted once closed (`final()`, closing by partition: with the default closing by key a window
closes only when its own client comes back), commit interval 1 s, and an alert (JSON) for each closed
window with portCount >= 30. Keyed input (cIP|Computer|sIP, as `iis-portscan produce` keys it) is
windowed as it is; `--unkeyed` re-keys through Quix's repartition topic (`group_by`).

It runs in its own virtualenv (Quix Streams pins confluent-kafka below the version the project uses),
with the repository on PYTHONPATH for streams.core. Prints a JSON line to stdout every 100 ms: events
read, the wall time of the first (epoch ms), the process CPU time then (ns).

    python -m benchmarks.peers.quix_peer --brokers B --input T --output O --app-id A --state-dir D
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from bisect import bisect_left
from typing import Any

from quixstreams import Application

from streams.core.enrich import Enricher, truncate
from streams.core.timefmt import format_iso_ms, parse_iso_ms

BIN_MS = 600_000
GRACE_MS = 120_000
THRESHOLD = 30
CAP = 128  # the legacy makeset's cap: each string set keeps its 128 smallest values
MAX_VALUE_BYTES = 1024
SET_COLUMNS = (
    "set_csUserName",
    "set_decodedUriQuery",
    "set_sSiteName",
    "set_csUserAgent",
    "set_csMethod",
    "set_scStatusFull",
    "set_scStatusFull_Friendly",
    "set_scWin32Status_Hex",
    "set_scWin32Status_Friendly",
)


class Progress:
    """Events read, and when (wall and process CPU) the first one was."""

    def __init__(self) -> None:
        self.events = 0
        self.first_ms = 0
        self.first_cpu_ns = 0

    def count(self, _value: Any) -> None:
        if not self.events:
            self.first_ms = int(time.time() * 1000)
            self.first_cpu_ns = time.process_time_ns()
        self.events += 1

    def report(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            line = {"events": self.events, "first_ms": self.first_ms, "first_cpu_ns": self.first_cpu_ns}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()


def _text(value: Any) -> str:
    return "" if value is None else value if type(value) is str else str(value)


def valid(v: Any) -> bool:
    """What the rule needs to place a record (the worker dead-letters the rest; the peers skip it)."""
    return (
        type(v) is dict
        and type(v.get("cIP")) is str
        and type(v.get("Computer")) is str
        and type(v.get("sIP")) is str
        and type(v.get("TimeGenerated")) is str
        and parse_iso_ms(v["TimeGenerated"]) is not None
    )


def time_generated(value: Any, _headers: Any, timestamp_ms: int, _type: Any) -> int:
    """The topic's timestamp extractor: TimeGenerated (epoch ms), else the message timestamp."""
    if type(value) is dict and type(value.get("TimeGenerated")) is str:
        ms = parse_iso_ms(value["TimeGenerated"])
        if ms is not None:
            return ms
    return timestamp_ms


class Rule:
    """The window aggregate (a JSON-ready dict: Quix stores it in RocksDB between events)."""

    def __init__(self) -> None:
        self.enricher = Enricher()

    def values(self, v: dict[str, Any]) -> list[str]:
        """One request's value for each of the nine sets (SET_COLUMNS order), cut to 1 KiB."""
        e = self.enricher
        full, friendly, win_hex, win_friendly = e.status(
            _text(v.get("scStatus")), _text(v.get("scSubStatus")), _text(v.get("scWin32Status"))
        )
        values = (
            _text(v.get("csUserName")),
            e.query(_text(v.get("csUriQuery"))),
            _text(v.get("sSiteName")),
            _text(v.get("csUserAgent")),
            _text(v.get("csMethod")),
            full,
            friendly,
            win_hex,
            win_friendly,
        )
        return [truncate(x, MAX_VALUE_BYTES) for x in values]

    def initializer(self, v: dict[str, Any]) -> dict[str, Any]:
        agg = {"k": [v["cIP"], v["Computer"], v["sIP"]], "n": 0, "f": None, "l": None, "p": [], "s": []}
        agg["s"] = [[] for _ in SET_COLUMNS]
        return self.reducer(agg, v)

    def reducer(self, agg: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
        ms = parse_iso_ms(v["TimeGenerated"])
        agg["n"] += 1
        if agg["f"] is None or ms < agg["f"]:
            agg["f"] = ms
        if agg["l"] is None or ms > agg["l"]:
            agg["l"] = ms
        port = v.get("sPort")
        if type(port) is str and port.strip().isdigit():
            port = int(port)
        if type(port) is int and 0 <= port <= 65535:
            ports = agg["p"]
            i = bisect_left(ports, port)
            if i == len(ports) or ports[i] != port:
                ports.insert(i, port)
        for values, x in zip(agg["s"], self.values(v)):
            i = bisect_left(values, x)
            if i < CAP and (i == len(values) or values[i] != x):
                values.insert(i, x)
                if len(values) > CAP:
                    values.pop()
        return agg


def closed_alert(window: dict[str, Any]) -> dict[str, Any]:
    agg = window["value"]
    cip, computer, sip = agg["k"]
    ports = agg["p"][:CAP]
    start = format_iso_ms(window["start"])
    sets = dict(zip(SET_COLUMNS, agg["s"]))
    return {
        "TimeGenerated": start,
        "cIP": cip,
        "set_sPort": ports,
        "set_csUserName": sets["set_csUserName"],
        "set_decodedUriQuery": sets["set_decodedUriQuery"],
        "Computer": computer,
        "set_sSiteName": sets["set_sSiteName"],
        "sIP": sip,
        "set_csUserAgent": sets["set_csUserAgent"],
        "set_csMethod": sets["set_csMethod"],
        "set_scStatusFull": sets["set_scStatusFull"],
        "set_scStatusFull_Friendly": sets["set_scStatusFull_Friendly"],
        "set_scWin32Status_Hex": sets["set_scWin32Status_Hex"],
        "set_scWin32Status_Friendly": sets["set_scWin32Status_Friendly"],
        "ConnectionsCount": agg["n"],
        "portCount": len(ports),
        "WindowStart": start,
        "WindowEnd": format_iso_ms(window["end"]),
        "DistinctPortCount": len(agg["p"]),
        "FirstSeen": format_iso_ms(agg["f"]),
        "LastSeen": format_iso_ms(agg["l"]),
        "System": "quixstreams",
    }


def build(args: argparse.Namespace, progress: Progress) -> Application:
    app = Application(
        broker_address=args.brokers,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=args.state_dir,
        loglevel="WARNING",
        use_changelog_topics=True,
    )
    source = app.topic(
        args.input, key_deserializer="str", value_deserializer="json", timestamp_extractor=time_generated
    )
    output = app.topic(args.output, key_serializer="str", value_serializer="json")
    rule = Rule()
    sdf = app.dataframe(source)
    sdf = sdf.update(progress.count).filter(valid)
    if args.unkeyed:
        sdf = sdf.group_by(
            lambda v: f"{v['cIP']}|{v['Computer']}|{v['sIP']}",
            name="window-key",
            key_serializer="str",
            key_deserializer="str",
        )
    sdf = (
        sdf.tumbling_window(duration_ms=BIN_MS, grace_ms=GRACE_MS)
        .reduce(reducer=rule.reducer, initializer=rule.initializer)
        .final(closing_strategy="partition")
    )
    sdf = sdf.filter(lambda w: min(len(w["value"]["p"]), CAP) >= THRESHOLD).apply(closed_alert)
    sdf.to_topic(output)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--unkeyed", action="store_true", help="re-key through a repartition topic")
    args = parser.parse_args(argv)
    progress = Progress()
    app = build(args, progress)
    stop = threading.Event()
    reporter = threading.Thread(target=progress.report, args=(stop,), daemon=True)
    reporter.start()
    try:
        app.run()  # until SIGTERM / SIGINT
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
