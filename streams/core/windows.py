"""Tumbling event-time windows: epoch-aligned, half-open bins, and the group key of the rule."""

from __future__ import annotations

from typing import NamedTuple


class WindowKey(NamedTuple):
    """The rule's group: `bin(TimeGenerated, 10m), cIP, Computer, sIP`.

    `start_ms` is the bin start in epoch ms; the window is `[start_ms, start_ms + bin_ms)`.
    """

    start_ms: int
    cIP: str
    Computer: str
    sIP: str


def bin_start(time_ms: int, bin_ms: int) -> int:
    """Kusto `bin()`: floor to a multiple of the bin since the epoch (12:10:00.000 opens the 12:10 bin)."""
    return time_ms - time_ms % bin_ms
