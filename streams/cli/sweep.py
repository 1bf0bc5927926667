"""`iis-portscan replay --sweep`: the back-testing table over files (streams.core.sweep)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from streams.cli.replay import load_allowlist, read_events
from streams.core.escape import dumps
from streams.core.sweep import Sweep, SweepError, parse_sweep
from streams.io.sources import SourceOptions
from streams.settings import ConfigError, Settings, format_duration_ms, parse_duration_ms


def run_sweep(
    paths: Sequence[str],
    settings: Settings,
    options: SourceOptions,
    specs: Sequence[str],
    output_dir: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Read the input once, print one row per (bin, threshold); with `output_dir`, each combination's
    alerts as `alerts-bin<B>-threshold<T>.jsonl` there."""
    base = settings.rule_params()
    try:
        thresholds, bins = parse_sweep(list(specs), parse_duration_ms, base)
    except SweepError as exc:
        raise ConfigError(str(exc)) from None
    allowlist = load_allowlist(settings)
    sweep = Sweep(base, thresholds, bins)
    stats = read_events(paths, options, sweep.add, err)
    rows = sweep.rows(allowlist, settings.notify_params())
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    header = f"{'bin':>5} {'threshold':>9} {'windows':>8} {'clients':>8} {'notifications':>13}"
    if allowlist is not None:
        header += f" {'allowlisted':>11}"
    out.write(header + "\n")
    for row, alerts in rows:
        line = (
            f"{format_duration_ms(row.bin_ms):>5} {row.threshold:>9} {row.windows:>8} {row.clients:>8} "
            f"{row.notifications:>13}"
        )
        if allowlist is not None:
            line += f" {row.allowlisted:>11}"
        out.write(line + "\n")
        if output_dir:
            name = f"alerts-bin{format_duration_ms(row.bin_ms)}-threshold{row.threshold}.jsonl"
            with open(os.path.join(output_dir, name), "wb") as fh:
                for alert in alerts:
                    fh.write(dumps(alert, option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    err.write(
        f"sweep: {stats.events} events read once, {len(bins)} bin sizes x {len(thresholds)} thresholds, "
        f"{stats.report(err)}; notifications per {format_duration_ms(settings.suppress_for)} and "
        f"{settings.notify_by}\n"
    )
    return 1 if stats.failed_files else 0


def main_sweep(
    paths: Sequence[str],
    settings: Settings,
    options: SourceOptions,
    specs: Sequence[str],
    output_dir: str | None,
) -> int:
    return run_sweep(paths or ["-"], settings, options, specs, output_dir, sys.stdout, sys.stderr)
