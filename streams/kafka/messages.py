"""Kafka messages in, events or dead letters out: what the router and the detector share.

A message is read on the fast path when it is one W3CIISLog record (nearly all of them), else by the
core's MessageReader (envelopes, shippers' formats, bad input). Its position, for the engine's
exactly-once state effect, is its input partition and offset, or the original input's when the router
forwarded it: the router writes that in `src-*` headers, which are trusted only on the app's own
repartition topic (on an input topic any producer could set them and make real events look applied).

Tenants (core.tenant): the router resolves each event's tenant as `--tenant-field` says and forwards it
in the `src-tenant` header, which the detector reads on the repartition topic (`detector_tenant`); with
`--input-keyed` the detector resolves it itself. A `field:` tenant is read with the record (the reader, or
the fast path's struct), a `header:` or `fixed:` one per message (`MessageDecoder.stamp`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from streams.core.deadletter import dead_letter, dead_letter_key
from streams.core.native import Decode, python_decode
from streams.core.parse import single_event
from streams.core.records import IISEvent, ParseError
from streams.core.shippers import MessageReader
from streams.core.state_records import position
from streams.core.tenant import H_TENANT, TenantSpec, single_event_with_tenant
from streams.core.windows import routing_key

__all__ = [
    "DeadLetter",
    "MessageDecoder",
    "dead_letter_of",
    "detector_tenant",
    "forward_headers",
    "routing_key",
    "source_position",
]

# Headers the router puts on forwarded records: the original input position.
H_TOPIC, H_PARTITION, H_OFFSET, H_INDEX = "src-topic", "src-partition", "src-offset", "src-index"
SEQ_SHIFT = 20  # sequence = offset << 20 | record index: envelopes of up to 1M records keep their order

DeadLetter = tuple[bytes, dict[str, Any]]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def forward_headers(msg: Any, index: int | None, tenant: str = "") -> list[tuple[str, bytes]]:
    """Where a forwarded record came from (see `source_position`), and its tenant when it has one."""
    headers = [
        (H_TOPIC, msg.topic.encode()),
        (H_PARTITION, str(msg.partition).encode()),
        (H_OFFSET, str(msg.offset).encode()),
        (H_INDEX, b"" if index is None else str(index).encode()),
    ]
    if tenant:
        headers.append((H_TENANT, tenant.encode()))
    return headers


def detector_tenant(spec: TenantSpec | None, forwarded: bool) -> TenantSpec | None:
    """How the detector reads tenants: on the repartition topic (`forwarded`) the router's `src-tenant`
    header, else as configured."""
    if spec is None or not forwarded:
        return spec
    return TenantSpec("header", H_TENANT)


def source_position(msg: Any, partition: int, trusted: bool) -> int:
    """The engine position (core.state_records.position) of a message's first record: its own partition and
    offset, or, when `trusted` and the router forwarded it, the original input's (so a record
    forwarded twice after a crash is applied once)."""
    if trusted and msg.headers:
        headers = dict(msg.headers)
        if H_PARTITION in headers:
            raw_index = headers.get(H_INDEX) or b"0"
            sequence = (int(headers[H_OFFSET]) << SEQ_SHIFT) | int(raw_index)
            return position(int(headers[H_PARTITION]), sequence)
    return position(partition, msg.offset << SEQ_SHIFT)


def dead_letter_of(error: ParseError, msg: Any, index: int | None, now: int, trusted: bool) -> DeadLetter:
    """The dead letter of a message's record; `trusted`: the message's `src-*` headers name its
    original input (the router wrote them)."""
    headers = dict(msg.headers or ()) if trusted else {}
    if H_TOPIC in headers:  # forwarded by the router: name the original input
        topic = headers[H_TOPIC].decode()
        partition = int(headers[H_PARTITION])
        offset = int(headers[H_OFFSET])
        raw_index = headers.get(H_INDEX)
        index = int(raw_index) if raw_index else None
    else:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
    record = dead_letter(error, msg.value, msg.key, topic, partition, offset, index, now)
    return dead_letter_key(topic, partition, offset, index), record


def _no_fast_path(payload: bytes | str | None) -> IISEvent | None:
    return None


def _no_fast_path_batch(values: list[Any]) -> list[IISEvent | None]:
    return [None] * len(values)


def _batch_of(single: Callable[[bytes | str | None], IISEvent | None]) -> Decode:
    def batch(values: list[Any]) -> list[IISEvent | None]:
        return [single(v) for v in values]

    return batch


class MessageDecoder:
    """The events of a message: `single` (the fast path: one W3CIISLog record, else None), then
    `events` for the rest; `batch` is `single` over a fetch's values at once (the engine's decoder,
    core.native: the Python core's `single_event`, or the native extension's, which gives the same).
    With a `header:` or `fixed:` tenant, `stamp` sets each event's (None otherwise: no tenants, or a
    `field:` one, which the reader and `single` set)."""

    __slots__ = ("batch", "reader", "single", "stamp", "tenant")

    def __init__(
        self,
        reader: MessageReader | None = None,
        tenant: TenantSpec | None = None,
        decode: Decode = python_decode,
    ) -> None:
        self.reader = reader or MessageReader()
        # W3CIISLog records go the fast path unless another reading is forced on every message.
        fast = self.reader.force in (None, "w3ciislog")
        self.single: Callable[[bytes | str | None], IISEvent | None] = single_event if fast else _no_fast_path
        self.batch: Decode = decode if fast else _no_fast_path_batch
        self.tenant = tenant
        self.stamp: Callable[[Any, IISEvent, int | None, int, list[DeadLetter], bool], bool] | None = None
        if tenant is not None and tenant.source == "field":
            # the tenant is a field of the record: the tenant-aware fast path (the native decoder knows none)
            single = single_event_with_tenant(tenant) if fast else None
            self.single = single or _no_fast_path
            self.batch = _batch_of(self.single)
        elif tenant is not None:
            self.stamp = self._stamp

    def _stamp(
        self, msg: Any, event: IISEvent, index: int | None, now: int, dead: list[DeadLetter], trusted: bool
    ) -> bool:
        """Set the event's tenant from its message; False (and a dead letter) when it has none usable."""
        spec = self.tenant
        assert spec is not None
        tenant = spec.name if spec.source == "fixed" else spec.of_headers(msg.headers)
        if type(tenant) is str:
            event.tenant = tenant
            return True
        dead.append(dead_letter_of(tenant, msg, index, now, trusted))  # type: ignore[arg-type]
        return False

    def events(
        self, msg: Any, now: int, dead: list[DeadLetter], trusted: bool
    ) -> Iterator[tuple[int | None, IISEvent]]:
        """(index in the envelope or None, event) of each valid record of a message that `single` did
        not take (envelopes, shippers' formats, bad input); bad records go to `dead`; directives (W3C
        `#` lines) hold none."""
        for index, result in self.reader.read(msg.value):
            if isinstance(result, ParseError):
                dead.append(dead_letter_of(result, msg, index, now, trusted))
            else:
                yield index, result
