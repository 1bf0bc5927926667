"""Timestamps: ISO-8601 in any precision and offset, to floored epoch ms, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.timefmt import MAX_MS, format_iso_ms, parse_iso_ms

T = 1_767_269_400_000  # 2026-01-01T12:10:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T12:10:00Z", T),
        ("2026-01-01T12:10:00.000Z", T),
        ("2026-01-01T12:10:00z", T),
        ("2026-01-01 12:10:00", T),
        ("2026-01-01T12:10Z", T),
        ("2026-01-01T12:09:59.9999999Z", T - 1),  # 7 digits (.NET ticks) truncated, never rounded up
        ("2026-01-01T12:10:00.1Z", T + 100),
        ("2026-01-01T12:10:00.12Z", T + 120),
        ("2026-01-01T12:10:00,5Z", T + 500),
        ("2026-01-01T14:10:00+02:00", T),
        ("2026-01-01T10:40:00-0130", T),
        ("2026-01-01T13:10:00+01", T),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_accepts(text: str, expected: int) -> None:
    assert parse_iso_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T12:60:00Z",
        "2026-01-01T12:10:61Z",
        "1969-12-31T23:59:59Z",
        "2026-01-01",
        "2026-01-01T12:10:00+25:00",
        "2026-01-01T12:10:00Zjunk",
        "１２３４-01-01T00:00:00Z",
    ],
)
def test_parse_rejects(text: str) -> None:
    assert parse_iso_ms(text) is None


def test_format_is_fixed_width_utc() -> None:
    assert format_iso_ms(T) == "2026-01-01T12:10:00.000Z"
    assert format_iso_ms(T + 7) == "2026-01-01T12:10:00.007Z"


@given(st.integers(min_value=0, max_value=MAX_MS))
def test_round_trip(ms: int) -> None:
    assert parse_iso_ms(format_iso_ms(ms)) == ms


@given(
    st.integers(min_value=0, max_value=MAX_MS),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from([".", ","]),
    st.text("0123456789", min_size=1, max_size=9),
    st.sampled_from(["Z", "z"]),
)
def test_minute_cache_path_equals_the_full_parse(ms: int, sep: str, dot: str, digits: str, zone: str) -> None:
    """The second parse of a minute takes the cached path; both agree with datetime's arithmetic."""
    text = format_iso_ms(ms).replace("T", sep)[:19] + dot + digits + zone
    expected = ms - ms % 1000 + int((digits + "00")[:3])
    assert parse_iso_ms(text) == expected
    assert parse_iso_ms(text) == expected


@pytest.mark.parametrize(
    "bad", ["2026-01-01T12:10:60.000Z", "2026-01-01T12:10:0x.000Z", "2026-01-01T12:10:00.Z"]
)
def test_minute_cache_path_still_rejects(bad: str) -> None:
    assert parse_iso_ms("2026-01-01T12:10:00.000Z") == T  # the minute is cached now
    assert parse_iso_ms(bad) is None


@given(
    st.integers(min_value=0, max_value=MAX_MS),
    st.lists(st.text("0123456789", min_size=1, max_size=9), min_size=2, max_size=4),
    st.integers(min_value=0, max_value=59),
)
def test_second_cache_path_equals_the_full_parse(ms: int, fractions: list[str], other_second: int) -> None:
    """Several requests in one second (the second is cached after the first), then another second of
    the same minute (the minute cache): each equals the arithmetic."""
    prefix = format_iso_ms(ms)[:19]
    for digits in fractions:
        assert parse_iso_ms(f"{prefix}.{digits}Z") == ms - ms % 1000 + int((digits + "00")[:3])
    minute_ms = ms - ms % 60_000
    other = f"{prefix[:17]}{other_second:02d}.5Z"
    assert parse_iso_ms(other) == minute_ms + other_second * 1000 + 500


@pytest.mark.parametrize(
    "bad", ["2026-01-01T12:10:00.0x0Z", "2026-01-01T12:10:00.\u0663Z", "2026-01-01T12:10:00,Z"]
)
def test_second_cache_path_still_rejects(bad: str) -> None:
    assert parse_iso_ms("2026-01-01T12:10:00.000Z") == T  # the second is cached now
    assert parse_iso_ms(bad) is None
