"""streams.core.windows: bins, store keys that sort by window start, the router's key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core import windows
from streams.core.records import IISEvent
from streams.core.windows import META_KEY, WindowKey, encode_key, key_start_ms

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
texts = st.text(max_size=40)


def test_bins_are_epoch_aligned_and_half_open() -> None:
    assert windows.bin_start(T0, BIN) == T0
    assert windows.bin_start(T0 + BIN - 1, BIN) == T0
    assert windows.bin_start(T0 + BIN, BIN) == T0 + BIN  # 12:10:00.000 opens the 12:10 bin


@given(st.integers(0, 10**13 - 1), texts, texts, texts)
def test_a_key_decodes_to_itself_and_starts_with_its_window_start(
    start: int, cip: str, host: str, sip: str
) -> None:
    key = WindowKey(start, cip, host, sip)
    data = encode_key(key)
    assert windows.decode_key(data) == key
    assert key_start_ms(data) == start and len(data[: windows.START_DIGITS]) == windows.START_DIGITS
    assert windows.is_window_key(data) and not windows.is_window_key(META_KEY)


@given(st.lists(st.tuples(st.integers(0, 10**13 - 1), texts), min_size=2, max_size=20))
def test_keys_sort_by_window_start_first(windows: list[tuple[int, str]]) -> None:
    """What makes retention a range delete and a restore a range scan in a sorted store."""
    keys = sorted(encode_key(WindowKey(start, cip, "WEB01", "10.0.0.1")) for start, cip in windows)
    starts = [key_start_ms(k) for k in keys]
    assert starts == sorted(starts)
    assert META_KEY < keys[0]  # the meta record sorts before every window


def test_the_routing_key_is_the_group_key_without_the_bin() -> None:
    a = IISEvent(T0, "198.51.100.7", "WEB01", "10.0.0.11", 443)
    b = IISEvent(T0 + 5 * BIN, "198.51.100.7", "WEB01", "10.0.0.11", 8080)
    c = IISEvent(T0, "198.51.100.7", "WEB02", "10.0.0.11", 443)
    assert windows.routing_key(a) == windows.routing_key(b) == b"198.51.100.7|WEB01|10.0.0.11"
    assert windows.routing_key(c) != windows.routing_key(a)
