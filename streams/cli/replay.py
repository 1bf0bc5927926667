"""`iis-portscan replay`: the rule over files, offline, in any event order."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO, TextIO

import orjson

from streams.core.batch import BatchDetector
from streams.core.escape import dumps, printable
from streams.core.ocsf import to_ocsf
from streams.core.records import ParseError
from streams.io.sources import SourceOptions, iter_file, open_binary
from streams.settings import Settings

MAX_ERRORS_SHOWN = 10_000


class Progress:
    """A one-line progress bar on a terminal's stderr; silent elsewhere or for small inputs."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.enabled = total > 8_000_000 and stream.isatty()
        self.next_at = 0.0

    def update(self, done: int, events: int) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next_at:
            return
        self.next_at = now + 0.25
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * 30)
        self.stream.write(f"\r[{bar:<30}] {share:6.1%} {events:,} events")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()


def _size(path: str) -> int:
    if path == "-":
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def run_replay(
    paths: Sequence[str], settings: Settings, options: SourceOptions, out: BinaryIO, err: TextIO
) -> int:
    """Run the rule over every file; alerts to `out` as JSON lines, bad input reported on `err`."""
    detector = BatchDetector(settings.rule_params())
    add = detector.add
    errors: Counter[str] = Counter()
    shown = 0
    events = 0
    failed_files = 0
    progress = Progress(err, sum(_size(p) for p in paths))
    done_before = 0
    for path in paths:
        try:
            reader, raw = open_binary(path)
        except OSError as exc:
            err.write(printable(f"{path}: cannot open: {exc.strerror or exc}") + "\n")
            failed_files += 1
            continue
        try:
            for location, result in iter_file(path, options, reader):
                if isinstance(result, ParseError):
                    errors[result.reason.value] += 1
                    if shown < MAX_ERRORS_SHOWN:
                        err.write(printable(f"{location}: {result.reason.value}: {result.detail}") + "\n")
                        shown += 1
                    continue
                add(result)
                events += 1
                if events & 0xFFFF == 0:
                    progress.update(done_before + raw.tell(), events)
        except (OSError, EOFError) as exc:  # truncated gzip, I/O error: report, keep what was read
            err.write(printable(f"{path}: read error: {exc}") + "\n")
            failed_files += 1
        finally:
            if path != "-":
                raw.close()
        done_before += _size(path)
    progress.close()
    alerts = detector.alerts()
    ocsf = settings.alert_format == "ocsf"  # one OCSF Detection Finding per alert, bounded like an alert
    max_bytes = detector.params.max_alert_bytes
    for alert in alerts:
        record = to_ocsf(alert, max_bytes) if ocsf else alert
        out.write(dumps(record, option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    bad = sum(errors.values())
    if shown < bad:
        err.write(f"... {bad - shown} more bad records not shown\n")
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(errors.items()))
    err.write(
        f"replay: {events} events, {len(detector.windows)} windows, {len(alerts)} alerts, "
        f"{bad} bad records{f' ({by_reason})' if bad else ''}\n"
    )
    return 1 if failed_files else 0


def main_replay(paths: Sequence[str], settings: Settings, options: SourceOptions, output: str | None) -> int:
    if output:
        with open(output, "wb") as fh:
            return run_replay(paths or ["-"], settings, options, fh, sys.stderr)
    return run_replay(paths or ["-"], settings, options, sys.stdout.buffer, sys.stderr)
