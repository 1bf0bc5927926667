"""The per-window aggregate: the rule's sets, ConnectionsCount and times; capped, order-independent.

Capping. The legacy `makeset` keeps at most 128 values and leaves undefined which ones. We keep, for
every set, the `cap` *smallest* values in natural order (ports numerically, strings by code point).
That choice does not depend on arrival order or on how events were split into partial aggregates,
and it is cheap: a set may hold up to 2*cap values between trims, and trimming to the cap smallest
never drops a value that could be among the cap smallest of any superset. Ports are kept whole
(at most 65,536) so that `DistinctPortCount` is exact whatever the cap.

Compact representation. Most windows see one or two requests (a client browsing), a few see many (a
scanner), and a stream keeps hundreds of thousands of windows open; an empty Python set alone takes
216 bytes. So each set is held as a *slot* that grows with it:

- one value: the value itself (a str, or an int port);
- 2 to SMALL values: a sorted tuple of them;
- more: a set.

Ports are None (no port yet) or a slot. The nine string sets together are None (no request yet), a
tuple of one value per set while every set holds exactly one value (it is the tuple of the window's
first request, shared between windows by the Enricher, so a one-request window holds no set of its
own), or else a list of slots. `ports`, `sets` and `result` give the plain-set view whatever the
representation; the property test in tests/unit/core/test_aggregate.py checks it against plain sets.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from heapq import nsmallest
from typing import Any

from streams.core.enrich import SET_NAMES, Enricher
from streams.core.records import IISEvent

__all__ = ["N_SETS", "SET_NAMES", "SMALL", "WindowAgg", "capped", "trim_slots"]

N_SETS = len(SET_NAMES)
SMALL = 8  # a slot is a sorted tuple up to this many values, a set beyond
_NO_TIME = 2**63 - 1

# A slot: one value, a sorted tuple of 2..SMALL values, or a set of more.
Slot = Any
Sets = tuple[str, ...] | list[Slot] | None


def _trim(values: set[Any], cap: int) -> None:
    """Keep the cap smallest values, in place."""
    keep = nsmallest(cap, values)
    values.clear()
    values.update(keep)


def capped(values: set[Any], cap: int) -> list[Any]:
    """The set as the rule reports it: sorted, at most cap values (0 = all)."""
    ordered = sorted(values)
    return ordered[:cap] if cap else ordered


def _slot_set(slot: Slot) -> set[Any]:
    """A slot (or None) as a new plain set."""
    if slot is None:
        return set()
    kind = type(slot)
    if kind is set or kind is tuple:
        return set(slot)
    return {slot}


def _slot_of(values: set[Any]) -> Slot:
    """A plain set as a slot: None when empty."""
    n = len(values)
    if n == 0:
        return None
    if n == 1:
        return next(iter(values))
    if n <= SMALL:
        return tuple(sorted(values))
    return values


def _slot_add(slot: Slot, value: Any, cap: int) -> Slot:
    """The slot with `value` added (a set slot is changed in place), trimmed when past 2*cap values."""
    kind = type(slot)
    if kind is tuple:
        if value in slot:
            return slot
        if len(slot) < SMALL:
            grown = tuple(sorted((*slot, value)))
            if cap and len(grown) > 2 * cap:
                grown = grown[:cap]
                return grown[0] if cap == 1 else grown
            return grown
        slot = set(slot)
        kind = set
    if kind is set:
        if value not in slot:
            slot.add(value)
            if cap and len(slot) > 2 * cap:
                _trim(slot, cap)
                if cap <= SMALL:
                    return _slot_of(slot)  # the form follows the size, so equal sets store equally
        return slot
    if slot == value:
        return slot
    return (slot, value) if slot < value else (value, slot)  # 2 values never exceed 2*cap


def trim_slots(slots: list[Slot], cap: int) -> None:
    """Trim every set slot holding more than `cap` values to its cap smallest, in place: lossless for
    what the rule reports (a slot may hold up to 2*cap between trims, see the module docstring)."""
    for i, slot in enumerate(slots):
        if type(slot) is set and len(slot) > cap:
            _trim(slot, cap)
            if cap <= SMALL:
                slots[i] = _slot_of(slot)


# Ports past this many are stored as a bitmap of the 65,536 ports (8 KiB, base64) rather than a list
# (up to ~390 KB of JSON), which keeps a full port sweep's record far below the record size limit.
_BITMAP_PORTS = 1024


def _ports_bitmap(ports: set[int]) -> dict[str, str]:
    bits = bytearray(8192)
    for port in ports:
        bits[port >> 3] |= 1 << (port & 7)
    return {"bits": base64.b64encode(bits).decode("ascii")}


def _ports_from_bitmap(state: dict[str, Any]) -> set[int]:
    bits = base64.b64decode(state["bits"])
    return {i * 8 + b for i, byte in enumerate(bits) if byte for b in range(8) if byte >> b & 1}


def _slot_capped(slot: Slot, cap: int) -> list[Any]:
    """A slot as the rule reports it (see `capped`)."""
    kind = type(slot)
    if kind is set:
        return capped(slot, cap)
    if kind is tuple:
        return list(slot[:cap] if cap else slot)
    return [slot]


def _slot_len(slot: Slot) -> int:
    kind = type(slot)
    return len(slot) if kind is set or kind is tuple else 1


def _slot_state(slot: Slot) -> Any:
    """A slot as stored: the value itself, or its values sorted (a tuple is already)."""
    return sorted(slot) if type(slot) is set else slot


def _slot_from_state(entry: Any) -> Slot:
    """A stored entry (one value, or a list of values) as a slot; None for an empty list."""
    return _slot_of(set(entry)) if type(entry) is list else entry


class WindowAgg:
    """Mutable aggregate of one window; the same requests give the same result in any order."""

    __slots__ = ("_ports", "_sets", "count", "first_ms", "last_ms")

    def __init__(self) -> None:
        self.count = 0
        self.first_ms = _NO_TIME
        self.last_ms = -1
        self._ports: Slot = None
        self._sets: Sets = None

    # ------------------------------------------------------------------ folding

    def add(self, time_ms: int, port: int | None, values: tuple[str, ...], cap: int) -> None:
        """Fold one request (its enriched values in SET_NAMES order) into the aggregate.

        The tuple is kept as it is (not copied) while every set holds one value: pass an immutable,
        ideally shared, tuple (`Enricher.values`).
        """
        self.count += 1
        if time_ms < self.first_ms:
            self.first_ms = time_ms
        if time_ms > self.last_ms:
            self.last_ms = time_ms
        if port is not None:
            ports = self._ports
            if ports is None:
                self._ports = port
            elif ports != port:  # an int slot holding this very port is left alone
                self._ports = _slot_add(ports, port, 0)  # ports are kept whole
        sets = self._sets
        if sets is values:
            return
        slots: list[Slot]
        if type(sets) is list:
            slots = sets
        elif sets is None:
            self._sets = values if type(values) is tuple else tuple(values)
            return
        elif sets == values:
            return
        else:
            slots = self._sets = list(sets)
        for i, v in enumerate(values):
            slot = slots[i]
            if slot is not v and slot != v:
                slots[i] = _slot_add(slot, v, cap)

    def add_event(self, event: IISEvent, enricher: Enricher, cap: int) -> None:
        """Enrich and fold one IISEvent."""
        self.add(event.time_ms, event.sPort, enricher.values(event), cap)

    # ------------------------------------------------------------------ reading

    @property
    def ports(self) -> set[int]:
        """The distinct ports kept (all of them: ports are never trimmed), as a new set."""
        return _slot_set(self._ports)

    @property
    def sets(self) -> tuple[set[str], ...]:
        """The string sets in SET_NAMES order, as new sets."""
        sets = self._sets
        if sets is None:
            return tuple(set() for _ in range(N_SETS))
        return tuple(_slot_set(slot) for slot in sets)

    def distinct_ports(self) -> int:
        """`DistinctPortCount`: the exact number of distinct ports."""
        ports = self._ports
        return 0 if ports is None else _slot_len(ports)

    def port_count(self, cap: int) -> int:
        """`arraylength(set_sPort)`: distinct ports, capped like the legacy makeset."""
        n = self.distinct_ports()
        return min(n, cap) if cap else n

    def reaches(self, threshold: int, cap: int) -> bool:
        """`port_count(cap) >= threshold`, without the calls for the many one-port windows."""
        ports = self._ports
        if ports is None:
            return False
        if type(ports) is int:
            return threshold <= 1
        return self.port_count(cap) >= threshold

    def share_sets(self, share: Callable[[tuple[str, ...]], tuple[str, ...]]) -> None:
        """Hold a one-request window's values as `share` gives them (the enricher's shared tuples):
        restored windows then take no more memory than ones built from events."""
        if type(self._sets) is tuple:
            self._sets = share(self._sets)

    def capped_ports(self, cap: int) -> list[int]:
        """`set_sPort` as the rule reports it: sorted, at most cap values."""
        ports = self._ports
        return [] if ports is None else _slot_capped(ports, cap)

    def capped_sets(self, cap: int) -> list[list[str]]:
        """The string sets as the rule reports them, in SET_NAMES order."""
        sets = self._sets
        if sets is None:
            return [[] for _ in range(N_SETS)]
        return [_slot_capped(slot, cap) for slot in sets]

    def result(self, cap: int) -> tuple[Any, ...]:
        """Canonical, comparable view: (count, first, last, ports, sets...) as the rule reports them."""
        return (
            self.count,
            self.first_ms,
            self.last_ms,
            tuple(self.capped_ports(cap)),
            self.distinct_ports(),
            *(tuple(s) for s in self.capped_sets(cap)),
        )

    # ------------------------------------------------------------------ state

    def state_ports(self) -> Any:
        """Ports as stored: null, one port, the sorted ports, or {"bits": base64} past _BITMAP_PORTS."""
        ports = self._ports
        if type(ports) is set and len(ports) > _BITMAP_PORTS:
            return _ports_bitmap(ports)
        return _slot_state(ports)

    def state_sets(self) -> Any:
        """String sets as stored: null, or per set (SET_NAMES order) one value or its sorted values."""
        sets = self._sets
        if sets is None or type(sets) is tuple:
            return sets
        return [_slot_state(slot) for slot in sets]

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state for a store (sets sorted, so equal states serialise equally).

        "p" is null, one port or a sorted list; "s" is null or one entry per set (SET_NAMES order),
        each one value or a sorted list.
        """
        return {
            "n": self.count,
            "f": self.first_ms,
            "l": self.last_ms,
            "p": self.state_ports(),
            "s": self.state_sets(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Set from `to_state` output, or from the earlier format (every set a list)."""
        self.count = state["n"]
        self.first_ms = state["f"]
        self.last_ms = state["l"]
        ports = state["p"]
        self._ports = _ports_from_bitmap(ports) if type(ports) is dict else _slot_from_state(ports)
        self.load_sets(state["s"])

    def load_sets(self, entries: Any) -> None:
        """Set the string sets from their stored form (see `state_sets`)."""
        self._sets = None
        if entries is None:
            return
        slots = [_slot_from_state(entry) for entry in entries]
        if any(slot is None for slot in slots):
            return  # empty sets: only an empty aggregate has those
        if all(type(slot) is str for slot in slots):
            self._sets = tuple(slots)
        else:
            self._sets = slots

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowAgg:
        agg = cls()
        agg.load_state(state)
        return agg
