"""The rule over a finite set of events, in any order: the answer `replay` prints and tests compare to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.core.aggregate import WindowAgg
from streams.core.alerts import alert_sort_key, build_alert
from streams.core.enrich import Enricher
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.tenant import TenantThresholds
from streams.core.windows import WindowKey, bin_start


class OfflineRule:
    """Folds events into per-window aggregates; `alerts()` is the rule's output over all of them."""

    __slots__ = ("enricher", "params", "tenants", "windows")

    def __init__(self, params: RuleParams | None = None, tenants: TenantThresholds | None = None) -> None:
        self.params = params or RuleParams()
        self.tenants = tenants  # per-tenant thresholds (core.tenant); None: params.threshold for all
        self.enricher = Enricher(
            plus_as_space=self.params.plus_as_space, max_value_bytes=self.params.max_value_bytes
        )
        self.windows: dict[WindowKey, WindowAgg] = {}

    def add(self, event: IISEvent) -> None:
        key = WindowKey(
            bin_start(event.time_ms, self.params.bin_ms), event.cIP, event.Computer, event.sIP, event.tenant
        )
        agg = self.windows.get(key)
        if agg is None:
            agg = self.windows[key] = WindowAgg()
        agg.add_event(event, self.enricher, self.params.max_set_size)

    def add_all(self, events: Iterable[IISEvent]) -> None:
        for event in events:
            self.add(event)

    def alerts(self) -> list[dict[str, Any]]:
        """Every window with portCount >= threshold, ordered by portCount descending."""
        p = self.params
        tenants = self.tenants
        if tenants is None:
            found = [
                build_alert(key, agg, p)
                for key, agg in self.windows.items()
                if agg.port_count(p.max_set_size) >= p.threshold
            ]
        else:
            found = []
            for key, agg in self.windows.items():
                threshold = tenants.of(key.tenant)
                if agg.port_count(p.max_set_size) >= threshold:
                    found.append(build_alert(key, agg, p, threshold))
        found.sort(key=alert_sort_key)
        return found


def offline_alerts(events: Iterable[IISEvent], params: RuleParams | None = None) -> list[dict[str, Any]]:
    """Convenience: the rule's alerts over `events`."""
    rule = OfflineRule(params)
    rule.add_all(events)
    return rule.alerts()
