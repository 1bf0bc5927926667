"""Dead-letter records: bad input, with where it came from and why it was refused.

The payload is kept up to PAYLOAD_PREFIX_BYTES (the client controls its size, and a dead letter must
itself stay under the broker's record limit), with its full length and SHA-256 so the original can be
found and checked in the source topic.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from streams.core.records import ParseError, Reason
from streams.core.timefmt import format_iso_ms

PAYLOAD_PREFIX_BYTES = 65_536  # escaped as JSON (at most 6x) it stays far below a 1 MB record
KEY_PREFIX_BYTES = 4096


def _text_or_base64(data: bytes | None, limit: int) -> tuple[str | None, str]:
    """The first `limit` bytes as text (a character the cut splits is left out), else as base64."""
    if data is None:
        return None, "none"
    cut = len(data) > limit
    data = data[:limit]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8"), "utf-8"
        return base64.b64encode(data).decode("ascii"), "base64"


def dead_letter(
    error: ParseError,
    payload: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    record_index: int | None,
    now_ms: int,
) -> dict[str, Any]:
    """The dead-letter record (schemas/deadletter.schema.json) for one refused input."""
    text, encoding = _text_or_base64(payload, PAYLOAD_PREFIX_BYTES)
    key_text, key_encoding = _text_or_base64(key, KEY_PREFIX_BYTES)
    size = 0 if payload is None else len(payload)
    return {
        "Reason": error.reason.value,
        "Detail": error.detail,
        "SourceTopic": topic,
        "SourcePartition": partition,
        "SourceOffset": offset,
        "RecordIndex": record_index,
        "Key": key_text,
        "KeyEncoding": key_encoding,
        "Payload": text,
        "PayloadEncoding": encoding,
        "PayloadBytes": size,
        "PayloadSha256": None if payload is None else hashlib.sha256(payload).hexdigest(),
        "PayloadTruncated": size > PAYLOAD_PREFIX_BYTES,
        "FailedAt": format_iso_ms(now_ms),
    }


def dead_letter_key(topic: str, partition: int, offset: int, record_index: int | None) -> bytes:
    """Keyed by source coordinates, so a replayed dead letter replaces its twin in a compacted topic."""
    return f"{topic}/{partition}/{offset}/{record_index if record_index is not None else '-'}".encode()


def unpublishable(
    topic: str, key: bytes | None, value: bytes | None, detail: str, now_ms: int
) -> tuple[bytes, dict[str, Any]]:
    """(key, dead letter) for a record the job made (alert, state, forwarded input) that the broker
    refused for good: `topic` is where it was meant to go; its payload is kept like an input's."""
    record = dead_letter(
        ParseError(Reason.UNPUBLISHABLE, detail[:500]), value, key, topic, 0, 0, None, now_ms
    )
    record["SourcePartition"] = record["SourceOffset"] = None
    digest = hashlib.sha256(key or b"").hexdigest()[:32]
    return f"unpublishable/{topic}/{digest}".encode(), record
