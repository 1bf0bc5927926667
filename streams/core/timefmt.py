"""Time in one representation: integer epoch milliseconds, UTC; ISO-8601 in and out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

# Accepted: YYYY-MM-DD[T ]HH:MM[:SS[.fraction]] followed by Z, z, +HH:MM, +HHMM, +HH or nothing (UTC).
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_EPOCH_DAY0 = datetime(1970, 1, 1, tzinfo=UTC).toordinal()
MIN_MS = 0  # 1970-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


@lru_cache(maxsize=4096)
def _day_ms(year: int, month: int, day: int) -> int | None:
    """Epoch ms of a calendar day, cached: a log file spans few days."""
    try:
        ordinal = datetime(year, month, day, tzinfo=UTC).toordinal()
    except ValueError:
        return None
    return (ordinal - _EPOCH_DAY0) * 86_400_000


_seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch ms, for seconds already validated
_minutes: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> epoch ms, for minutes already validated
_CACHE_SIZE = 8192


def parse_iso_ms(text: str) -> int | None:
    """Parse an ISO-8601 timestamp to epoch ms (floored); None if it is not one or out of range.

    Any sub-second precision is accepted (.NET writes 7 digits); digits past milliseconds are
    truncated, never rounded, so an event keeps its bin.

    The hot path (one call per event): the usual UTC form `YYYY-MM-DDTHH:MM:SS.fffZ` of a second seen
    before costs one slice, one lookup and one int() (a busy server logs many requests a second); of a
    minute seen before, two slices and two int() calls; the regex validates each new minute once.
    """
    if len(text) >= 22 and text[19] in ".," and text[-1] in "Zz":
        frac = text[20:-1]
        if frac.isdigit() and frac.isascii():
            base = _seconds.get(text[:19])
            if base is not None:
                return base + int(frac[:3] if len(frac) >= 3 else (frac + "00")[:3])
            frac_ms = int((frac + "00")[:3])
            base = _minutes.get(text[:16])
            if base is not None and text[16] == ":":
                sec = text[17:19]
                if sec.isdigit() and sec.isascii() and sec < "60":
                    second = base + int(sec) * 1000
                    _remember(_seconds, text[:19], second)
                    return second + frac_ms
        ms = _parse(text)
        if ms is not None:  # the whole text is valid, so are its second and minute
            frac_ms = int((text[20:-1] + "00")[:3])
            _remember(_seconds, text[:19], ms - frac_ms)
            if text[16] == ":":
                _remember(_minutes, text[:16], ms - frac_ms - int(text[17:19]) * 1000)
        return ms
    return _parse(text)


def _remember(memo: dict[str, int], key: str, ms: int) -> None:
    if len(memo) >= _CACHE_SIZE:
        memo.clear()
    memo[key] = ms


def _parse(text: str) -> int | None:
    m = _ISO.fullmatch(text)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, _z, sign, oh, om = m.groups()
    day = _day_ms(int(y), int(mo), int(d))
    if day is None:
        return None
    h, mnt, sec = int(hh), int(mi), int(ss) if ss else 0
    if h > 23 or mnt > 59 or sec > 59:
        return None
    ms = day + ((h * 60 + mnt) * 60 + sec) * 1000
    if frac:
        ms += int((frac + "00")[:3])
    if sign is not None:
        oh_i, om_i = int(oh), int(om) if om else 0
        if oh_i > 23 or om_i > 59:
            return None
        offset = (oh_i * 60 + om_i) * 60_000
        ms = ms - offset if sign == "+" else ms + offset
    if ms < MIN_MS or ms > MAX_MS:
        return None
    return ms


def format_iso_ms(ms: int) -> str:
    """Epoch ms to ISO-8601 UTC with millisecond precision and 'Z' (fixed width, sorts as text)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
