"""Tumbling event-time windows: epoch-aligned, half-open bins, and the group key of the rule."""

from __future__ import annotations

from typing import NamedTuple

import orjson

from streams.core.records import IISEvent

START_DIGITS = 13  # a store key starts with its window start, zero-padded to this many digits
META_KEY = b"\x00meta"  # a partition's watermark record: sorts before every window key


def is_window_key(key: bytes) -> bool:
    """A window record's store key (not the meta record, nor a store's own bookkeeping)."""
    return key[:1].isdigit()


class WindowKey(NamedTuple):
    """The rule's group: `bin(TimeGenerated, 10m), cIP, Computer, sIP`.

    `start_ms` is the bin start in epoch ms; the window is `[start_ms, start_ms + bin_ms)`. With
    `--tenant-field` the group's first column is the tenant (core.tenant); "" without tenants.
    """

    start_ms: int
    cIP: str
    Computer: str
    sIP: str
    tenant: str = ""


def bin_start(time_ms: int, bin_ms: int) -> int:
    """Kusto `bin()`: floor to a multiple of the bin since the epoch (12:10:00.000 opens the 12:10 bin)."""
    return time_ms - time_ms % bin_ms


def group_json(tenant: str, cip: str, computer: str, sip: str) -> bytes:
    """The group part of a store key: `[cIP, Computer, sIP]`, or `[tenant, cIP, Computer, sIP]` for a
    tenant's window (so a key without a tenant is byte-identical to one made before tenants existed)."""
    if tenant:
        return orjson.dumps((tenant, cip, computer, sip))
    return orjson.dumps((cip, computer, sip))


def encode_key(key: WindowKey) -> bytes:
    """Store key: zero-padded start first, so a sorted store (RocksDB) lists windows by time."""
    return b"%013d%s" % (key.start_ms, group_json(key.tenant, key.cIP, key.Computer, key.sIP))


def decode_key(data: bytes) -> WindowKey:
    parts = orjson.loads(data[START_DIGITS:])
    if len(parts) == 4:
        tenant, cip, computer, sip = parts
        return WindowKey(int(data[:START_DIGITS]), cip, computer, sip, tenant)
    cip, computer, sip = parts
    return WindowKey(int(data[:START_DIGITS]), cip, computer, sip)


def key_start_ms(data: bytes) -> int:
    """The window start of a store key, without decoding the rest."""
    return int(data[:START_DIGITS])


def routing_key(event: IISEvent) -> bytes:
    """The message key that puts every event of one (cIP, Computer, sIP) in one partition: what the
    router and `iis-portscan produce` key by. A tenant's event is keyed `tenant|cIP|Computer|sIP`, so one
    tenant's windows of a key land together, apart from another tenant's."""
    if event.tenant:
        return f"{event.tenant}|{event.cIP}|{event.Computer}|{event.sIP}".encode()
    return f"{event.cIP}|{event.Computer}|{event.sIP}".encode()
