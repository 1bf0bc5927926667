"""streams.kafka.messages: the positions the router forwards in headers, trusted only on the app's own
repartition topic, and the dead letters that name the original input."""

from __future__ import annotations

from streams.core.records import IISEvent, ParseError, Reason
from streams.core.shippers import MessageReader
from streams.core.state_records import position
from streams.kafka.messages import (
    H_INDEX,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    SEQ_SHIFT,
    MessageDecoder,
    dead_letter_of,
    forward_headers,
    source_position,
)
from tests.harness import NOW, Msg

INPUT = Msg("w3ciislog", 5, 1234, b"k", b"{}")


def forwarded(index: int | None) -> Msg:
    return Msg("app-w3ciislog-by-key", 0, 9, b"key", b"{}", forward_headers(INPUT, index))


def test_forward_headers_name_the_input_position() -> None:
    assert dict(forward_headers(INPUT, None)) == {
        H_TOPIC: b"w3ciislog",
        H_PARTITION: b"5",
        H_OFFSET: b"1234",
        H_INDEX: b"",
    }
    assert dict(forward_headers(INPUT, 3))[H_INDEX] == b"3"


def test_a_forwarded_record_has_its_input_position_only_when_trusted() -> None:
    assert source_position(forwarded(None), 0, trusted=True) == position(5, 1234 << SEQ_SHIFT)
    assert source_position(forwarded(3), 0, trusted=True) == position(5, (1234 << SEQ_SHIFT) | 3)
    # On an input topic anyone could write such headers: the message's own position counts.
    assert source_position(forwarded(3), 0, trusted=False) == position(0, 9 << SEQ_SHIFT)
    assert source_position(INPUT, 5, trusted=True) == position(5, 1234 << SEQ_SHIFT)  # no headers


def test_a_dead_letter_names_the_original_input_when_trusted() -> None:
    error = ParseError(Reason.INVALID_JSON, "x")
    key, record = dead_letter_of(error, forwarded(3), 3, NOW, trusted=True)
    assert key == b"w3ciislog/5/1234/3"
    assert (
        record["SourceTopic"],
        record["SourcePartition"],
        record["SourceOffset"],
        record["RecordIndex"],
    ) == (
        "w3ciislog",
        5,
        1234,
        3,
    )
    key, record = dead_letter_of(error, forwarded(3), 3, NOW, trusted=False)
    assert key == b"app-w3ciislog-by-key/0/9/3" and record["SourceTopic"] == "app-w3ciislog-by-key"


def test_the_decoder_takes_w3ciislog_records_fast_and_the_rest_through_the_reader() -> None:
    record = (
        b'{"TimeGenerated":"2026-01-01T12:00:00Z","cIP":"198.51.100.7","Computer":"W","sIP":"10.0.0.1",'
        b'"sPort":80}'
    )
    decoder = MessageDecoder(MessageReader(computer="H"))
    assert isinstance(decoder.single(record), IISEvent)
    assert decoder.single(b"[1]") is None
    dead: list[tuple[bytes, dict[str, object]]] = []
    assert list(decoder.events(Msg("t", 0, 7, None, b"[1]"), NOW, dead, trusted=False)) == []
    assert len(dead) == 1 and dead[0][0].startswith(b"t/0/7/")
    forced = MessageDecoder(MessageReader(computer="H", force="raw"))
    assert forced.single(record) is None  # a forced reading takes every message, the fast path none
