"""streams.core.deadletter: what a dead letter keeps of the input it refuses, bounded, and its key."""

from __future__ import annotations

import base64
import hashlib

from streams.core.deadletter import (
    KEY_PREFIX_BYTES,
    PAYLOAD_PREFIX_BYTES,
    dead_letter,
    dead_letter_key,
    unpublishable,
)
from streams.core.records import ParseError, Reason

NOW = 1_767_268_800_000
ERROR = ParseError(Reason.INVALID_JSON, "expected value")


def test_a_text_payload_is_kept_with_its_source_and_digest() -> None:
    record = dead_letter(ERROR, b"not json", b"k", "w3ciislog", 3, 41, None, NOW)
    assert record["Reason"] == Reason.INVALID_JSON.value and record["Detail"] == "expected value"
    assert (record["SourceTopic"], record["SourcePartition"], record["SourceOffset"]) == ("w3ciislog", 3, 41)
    assert (record["Payload"], record["PayloadEncoding"], record["Key"]) == ("not json", "utf-8", "k")
    assert record["PayloadSha256"] == hashlib.sha256(b"not json").hexdigest()
    assert record["PayloadBytes"] == 8 and not record["PayloadTruncated"]
    assert record["FailedAt"] == "2026-01-01T12:00:00.000Z"


def test_binary_is_base64_and_nothing_is_none() -> None:
    raw = b"\xff\xfe\x00bin"
    record = dead_letter(ERROR, raw, None, "t", 0, 0, 2, NOW)
    assert record["PayloadEncoding"] == "base64" and base64.b64decode(record["Payload"]) == raw
    assert (record["Key"], record["KeyEncoding"], record["RecordIndex"]) == (None, "none", 2)
    tombstone = dead_letter(ERROR, None, None, "t", 0, 0, None, NOW)
    assert (tombstone["Payload"], tombstone["PayloadEncoding"], tombstone["PayloadSha256"]) == (
        None,
        "none",
        None,
    )


def test_a_large_payload_keeps_a_bounded_prefix_without_splitting_a_character() -> None:
    payload = b"a" * (PAYLOAD_PREFIX_BYTES - 1) + "é".encode() * 10  # the cut falls inside an 'é'
    record = dead_letter(ERROR, payload, b"k" * (KEY_PREFIX_BYTES + 5), "t", 0, 0, None, NOW)
    assert record["PayloadEncoding"] == "utf-8" and record["Payload"] == "a" * (PAYLOAD_PREFIX_BYTES - 1)
    assert record["PayloadTruncated"] and record["PayloadBytes"] == len(payload)
    assert record["PayloadSha256"] == hashlib.sha256(payload).hexdigest()  # of the whole payload
    assert len(record["Key"]) == KEY_PREFIX_BYTES


def test_keys_name_the_source_so_a_replayed_letter_replaces_its_twin() -> None:
    assert dead_letter_key("w3ciislog", 3, 41, None) == b"w3ciislog/3/41/-"
    assert dead_letter_key("w3ciislog", 3, 41, 7) == b"w3ciislog/3/41/7"


def test_a_record_the_broker_refused_is_an_unpublishable_letter_keyed_by_its_own_key() -> None:
    key, record = unpublishable("alerts", b"alert-id", b"{}" * 10, "x" * 900, NOW)
    assert key == b"unpublishable/alerts/" + hashlib.sha256(b"alert-id").hexdigest()[:32].encode()
    assert record["Reason"] == Reason.UNPUBLISHABLE.value and len(record["Detail"]) == 500
    assert record["SourceTopic"] == "alerts" and record["SourcePartition"] is record["SourceOffset"] is None
