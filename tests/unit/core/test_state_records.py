"""streams.core.state_records: what a window and a partition's clock are on disk, read back the same."""

from __future__ import annotations

from streams.core.aggregate import SET_NAMES
from streams.core.state_records import NO_TIME, Meta, WindowRecord, encode_writes, position, revision
from streams.core.windows import META_KEY

T0 = 1_767_268_800_000


def window(ports: tuple[int, ...]) -> WindowRecord:
    """A window's record fed as the engine feeds it: `first`, then `first_time` and `add` per event."""
    values = ("200.0.0", "-")[: len(SET_NAMES)] + ("",) * (len(SET_NAMES) - 2)
    rec = WindowRecord.first(T0, ports[0], values, position(0, 0), closed=False)
    for i, port in enumerate(ports[1:], 1):
        assert rec.first_time(position(0, i))
        rec.add(T0 + i, port, values, 0)
    return rec


def test_positions_keep_the_source_partition_apart_from_the_sequence() -> None:
    assert position(3, 7) == (3 << 64) | 7
    assert position(3, 7) != position(4, 7) and position(0, 2**64 - 1) < position(1, 0)


def test_the_meta_record_reads_back_and_absence_is_no_time() -> None:
    meta = Meta(watermark=T0, max_event_ms=T0 + 5)
    assert Meta.from_bytes(meta.to_bytes()) == meta
    assert Meta.from_bytes(None) == Meta(NO_TIME, NO_TIME)


def test_encode_writes_keeps_the_order_and_encodes_each_kind() -> None:
    meta = Meta(T0, T0)
    rec = window((443, 80, 8080, 80))
    rec.alerts_sent = 1
    writes = encode_writes({META_KEY: meta, b"0001": rec})
    assert list(writes) == [META_KEY, b"0001"]
    assert writes[META_KEY] == meta.to_bytes()
    again = WindowRecord.from_bytes(writes[b"0001"])
    assert (again.count, again.first_ms, again.last_ms) == (4, T0, T0 + 3)
    assert (again.alerts_sent, again.closed, again.offsets) == (1, False, rec.offsets)
    assert again.to_bytes() == writes[b"0001"]  # read back, written again: the same bytes
    assert not again.first_time(position(0, 2))  # an applied position is not applied twice
    assert again.first_time(position(1, 0))  # another source partition's is


def test_revision_grows_with_content_and_closing_outranks_the_same_count() -> None:
    small, large = window((1, 2)), window((1, 2, 3))
    assert revision(large) > revision(small)
    before = revision(small)
    small.closed = True
    assert revision(small) == before + 1 < revision(large)
