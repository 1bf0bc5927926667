"""The per-window aggregate: the rule's sets, ConnectionsCount and times; mergeable and capped.

Capping. The legacy `makeset` keeps at most 128 values and leaves undefined which ones. We keep, for
every set, the `cap` *smallest* values in natural order (ports numerically, strings by code point).
That choice does not depend on arrival order or on how events were split into partial aggregates,
and it is cheap: a set may hold up to 2*cap values between trims, and trimming to the cap smallest
never drops a value that could be among the cap smallest of any superset. Ports are kept whole
(at most 65,536) so that `DistinctPortCount` is exact whatever the cap.
"""

from __future__ import annotations

from heapq import nsmallest
from typing import Any

from streams.core.enrich import Enricher
from streams.core.records import IISEvent

# The rule's collected string sets, in the order the alert projects them.
SET_NAMES = (
    "csUserName",
    "decodedUriQuery",
    "sSiteName",
    "csUserAgent",
    "csMethod",
    "scStatusFull",
    "scStatusFull_Friendly",
    "scWin32Status_Hex",
    "scWin32Status_Friendly",
)
N_SETS = len(SET_NAMES)
_NO_TIME = 2**63 - 1


def _trim(values: set[Any], cap: int) -> None:
    """Keep the cap smallest values, in place."""
    keep = nsmallest(cap, values)
    values.clear()
    values.update(keep)


def capped(values: set[Any], cap: int) -> list[Any]:
    """The set as the rule reports it: sorted, at most cap values (0 = all)."""
    ordered = sorted(values)
    return ordered[:cap] if cap else ordered


class WindowAgg:
    """Mutable partial aggregate of one window; `merge` makes partials combine in any order."""

    __slots__ = ("count", "first_ms", "last_ms", "ports", "sets")

    def __init__(self) -> None:
        self.count = 0
        self.first_ms = _NO_TIME
        self.last_ms = -1
        self.ports: set[int] = set()
        self.sets: tuple[set[str], ...] = tuple(set() for _ in range(N_SETS))

    def add(self, time_ms: int, port: int | None, values: tuple[str, ...], cap: int) -> None:
        """Fold one request (its enriched values in SET_NAMES order) into the aggregate."""
        self.count += 1
        if time_ms < self.first_ms:
            self.first_ms = time_ms
        if time_ms > self.last_ms:
            self.last_ms = time_ms
        if port is not None:
            self.ports.add(port)
        limit = 2 * cap
        for s, v in zip(self.sets, values):
            if v not in s:
                s.add(v)
                if cap and len(s) > limit:
                    _trim(s, cap)

    def add_event(self, event: IISEvent, enricher: Enricher, cap: int) -> None:
        """Enrich and fold one IISEvent."""
        self.add(event.time_ms, event.sPort, enriched_values(event, enricher), cap)

    def merge(self, other: WindowAgg, cap: int) -> None:
        """Combine another partial aggregate of the same window into this one."""
        self.count += other.count
        self.first_ms = min(self.first_ms, other.first_ms)
        self.last_ms = max(self.last_ms, other.last_ms)
        self.ports |= other.ports
        for s, o in zip(self.sets, other.sets):
            s |= o
            if cap and len(s) > cap:
                _trim(s, cap)

    def port_count(self, cap: int) -> int:
        """`arraylength(set_sPort)`: distinct ports, capped like the legacy makeset."""
        n = len(self.ports)
        return min(n, cap) if cap else n

    def result(self, cap: int) -> tuple[Any, ...]:
        """Canonical, comparable view: (count, first, last, ports, sets...) as the rule reports them."""
        return (
            self.count,
            self.first_ms,
            self.last_ms,
            tuple(capped(self.ports, cap)),
            len(self.ports),
            *(tuple(capped(s, cap)) for s in self.sets),
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state for a store (sets as sorted lists, so equal states serialise equally)."""
        return {
            "n": self.count,
            "f": self.first_ms,
            "l": self.last_ms,
            "p": sorted(self.ports),
            "s": [sorted(s) for s in self.sets],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowAgg:
        agg = cls()
        agg.count = state["n"]
        agg.first_ms = state["f"]
        agg.last_ms = state["l"]
        agg.ports = set(state["p"])
        agg.sets = tuple(set(v) for v in state["s"])
        return agg


def enriched_values(event: IISEvent, enricher: Enricher) -> tuple[str, ...]:
    """The values one request contributes to each string set, in SET_NAMES order."""
    full, full_friendly, win_hex, win_friendly = enricher.status(
        event.scStatus, event.scSubStatus, event.scWin32Status
    )
    return (
        event.csUserName,
        enricher.query(event.csUriQuery),
        event.sSiteName,
        event.csUserAgent,
        event.csMethod,
        full,
        full_friendly,
        win_hex,
        win_friendly,
    )
