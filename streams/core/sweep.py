"""Back-testing: how many windows, clients and notifications each (threshold, bin) combination gives.

`replay --sweep threshold=10,20,30,50 --sweep bin=5m,10m,15m`: the input is read once; each event is
folded into one set of windows per bin size (`Sweep.add`), and every threshold of a bin is judged over
that bin's windows (portCount is a property of the window, not of the threshold), so the cost is one
pass over the input and one aggregation per bin, not per combination. Each combination's alerts are
exactly `replay --threshold T --bin B`'s (with the same allowlist); its notifications are
`replay --notify`'s. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from streams.core.alerts import alert_sort_key, build_alert
from streams.core.allowlist import Allowlist, judge
from streams.core.notify import NotifyParams, notify_all
from streams.core.offline import OfflineRule
from streams.core.records import IISEvent
from streams.core.rule import RuleConfigError, RuleParams


class SweepError(ValueError):
    """A --sweep argument that cannot be used."""


@dataclass(frozen=True, slots=True)
class Row:
    """One combination's answer."""

    bin_ms: int
    threshold: int
    windows: int  # alerted windows (after the allowlist)
    clients: int  # distinct cIP among them
    notifications: int  # pages (core.notify)
    allowlisted: int  # windows the allowlist kept from alerting


def parse_sweep(args: list[str], parse_duration: Any, base: RuleParams) -> tuple[list[int], list[int]]:
    """(thresholds, bins in ms) from `name=v1,v2` arguments; the base rule's value where not swept."""
    thresholds: list[int] = []
    bins: list[int] = []
    for arg in args:
        name, sep, values = arg.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not items:
            raise SweepError(f"--sweep takes NAME=V1,V2,... (threshold or bin), got {arg!r}")
        try:
            if name.strip() == "threshold":
                thresholds += [int(v) for v in items]
            elif name.strip() == "bin":
                bins += [parse_duration(v) for v in items]
            else:
                raise SweepError(f"--sweep sweeps threshold or bin, not {name.strip()!r}")
        except ValueError as exc:
            if isinstance(exc, SweepError):
                raise
            raise SweepError(f"--sweep {arg!r}: {exc}") from None
    thresholds = sorted(set(thresholds or [base.threshold]))
    bins = sorted(set(bins or [base.bin_ms]))
    for t in thresholds:
        for b in bins:
            try:
                replace(base, threshold=t, bin_ms=b)
            except RuleConfigError as exc:
                raise SweepError(f"--sweep threshold={t} bin={b} ms: {exc}") from None
    return thresholds, bins


class Sweep:
    """One OfflineRule per bin size, fed by one pass over the input."""

    def __init__(self, base: RuleParams, thresholds: list[int], bins: list[int]) -> None:
        self.thresholds = thresholds
        self.rules = {b: OfflineRule(replace(base, bin_ms=b, threshold=min(thresholds))) for b in bins}
        self._adds = [d.add for d in self.rules.values()]

    def add(self, event: IISEvent) -> None:
        for add in self._adds:
            add(event)

    def alerts(self, bin_ms: int, threshold: int) -> list[dict[str, Any]]:
        """What `replay --bin bin_ms --threshold threshold` prints (before an allowlist)."""
        rule = self.rules[bin_ms]
        params = replace(rule.params, threshold=threshold)
        cap = params.max_set_size
        found = [
            build_alert(key, agg, params)
            for key, agg in rule.windows.items()
            if agg.port_count(cap) >= threshold
        ]
        found.sort(key=alert_sort_key)
        return found

    def rows(
        self, allowlist: Allowlist | None, notify: NotifyParams
    ) -> list[tuple[Row, list[dict[str, Any]]]]:
        """Every combination (bin, then threshold ascending) with its alerts."""
        out = []
        for bin_ms in self.rules:
            for threshold in self.thresholds:
                verdict = judge(self.alerts(bin_ms, threshold), allowlist)
                period = max(notify.period_ms - notify.period_ms % bin_ms, bin_ms)  # a multiple of the bin
                pages = notify_all(verdict.kept, replace(notify, bin_ms=bin_ms, period_ms=period))
                row = Row(
                    bin_ms,
                    threshold,
                    len(verdict.kept),
                    len({(a.get("TenantId", ""), a["cIP"]) for a in verdict.kept}),  # per tenant
                    sum(1 for _, r in pages if r["Kind"] == "page"),
                    len(verdict.suppressed),
                )
                out.append((row, verdict.kept))
        return out
