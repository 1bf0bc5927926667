"""Dead-letter records: bad input kept whole, with where it came from and why it was refused."""

from __future__ import annotations

import base64
from typing import Any

from streams.core.records import ParseError
from streams.core.timefmt import format_iso_ms


def _text_or_base64(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "none"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
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
    text, encoding = _text_or_base64(payload)
    key_text, key_encoding = _text_or_base64(key)
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
        "FailedAt": format_iso_ms(now_ms),
    }


def dead_letter_key(topic: str, partition: int, offset: int, record_index: int | None) -> bytes:
    """Keyed by source coordinates, so a replayed dead letter replaces its twin in a compacted topic."""
    return f"{topic}/{partition}/{offset}/{record_index if record_index is not None else '-'}".encode()
