"""The window aggregate: capped sets keep the smallest values, and the result does not depend on the order."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from streams.core.aggregate import N_SETS, SMALL, WindowAgg, capped

Row = tuple[int, int | None, tuple[str, ...]]


def fold(rows: list[Row], cap: int) -> WindowAgg:
    agg = WindowAgg()
    for t, port, values in rows:
        agg.add(t, port, values, cap)
    return agg


def vals(i: int) -> tuple[str, ...]:
    return tuple(f"v{(i * (k + 1)) % 997}" for k in range(N_SETS))


def test_ports_capped_at_128_smallest_but_distinct_count_exact() -> None:
    ports = list(range(1000, 1200))
    random.Random(3).shuffle(ports)
    agg = fold([(i, p, vals(i)) for i, p in enumerate(ports)], cap=128)
    assert agg.port_count(128) == 128
    assert capped(agg.ports, 128) == list(range(1000, 1128))
    assert len(agg.ports) == 200
    assert agg.count == 200
    assert agg.port_count(0) == 200


def test_string_sets_keep_cap_smallest_in_any_order() -> None:
    names = [f"user{i:04d}" for i in range(300)]
    for seed in range(5):
        random.Random(seed).shuffle(names)
        agg = fold([(0, 80, (n, *vals(0)[1:])) for n in names], cap=128)
        assert capped(agg.sets[0], 128) == [f"user{i:04d}" for i in range(128)]
        assert len(agg.sets[0]) <= 256  # bounded between trims


def test_null_port_counts_connection_but_not_port() -> None:
    agg = fold([(0, None, vals(0)), (1, 80, vals(1))], cap=128)
    assert agg.count == 2
    assert agg.ports == {80}


def test_empty_string_is_a_value() -> None:
    agg = fold([(0, 80, ("",) * N_SETS)], cap=128)
    assert all(s == {""} for s in agg.sets)


def test_first_and_last_seen() -> None:
    agg = fold([(50, 1, vals(0)), (10, 2, vals(1)), (30, 3, vals(2))], cap=128)
    assert (agg.first_ms, agg.last_ms) == (10, 50)


def test_state_round_trip() -> None:
    agg = fold([(i, i % 50, vals(i)) for i in range(400)], cap=16)
    again = WindowAgg.from_state(agg.to_state())
    assert again.result(16) == agg.result(16)


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 599_999),
        st.none() | st.integers(0, 300),
        st.tuples(
            *[st.sampled_from(["", "-", "a", "b", "c", "é", "z" * 3, "A"]) | st.text(max_size=3)] * N_SETS
        ),
    ),
    max_size=120,
)


@given(rows_strategy, st.randoms(use_true_random=False), st.sampled_from([0, 1, 3, 8, 128]))
def test_order_independent(rows: list[Row], rnd: random.Random, cap: int) -> None:
    """Events of a window arrive in any order (across partitions, after a restart): same result."""
    whole = fold(rows, cap)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    again = fold(shuffled, cap)
    assert again.result(cap) == whole.result(cap)
    assert WindowAgg.from_state(again.to_state()).result(cap) == whole.result(cap)


@given(rows_strategy, st.sampled_from([1, 2, 5, 128]))
def test_capped_sets_are_subsets_of_true_sets(rows: list[Row], cap: int) -> None:
    agg = fold(rows, cap)
    truth = fold(rows, 0)
    for mine, true in zip(agg.sets, truth.sets):
        kept = capped(mine, cap)
        assert set(kept) <= true
        assert len(kept) == min(cap, len(true))
        assert kept == sorted(true)[:cap]
    assert set(capped(agg.ports, cap)) <= truth.ports


# --- The compact representation against plain sets ---------------------------------------------------


class PlainAgg:
    """The aggregate with plain sets, as first written: the reference for WindowAgg's compact slots."""

    def __init__(self) -> None:
        self.count = 0
        self.first_ms = 2**63 - 1
        self.last_ms = -1
        self.ports: set[int] = set()
        self.sets: tuple[set[str], ...] = tuple(set() for _ in range(N_SETS))

    def add(self, time_ms: int, port: int | None, values: tuple[str, ...], cap: int) -> None:
        self.count += 1
        self.first_ms = min(self.first_ms, time_ms)
        self.last_ms = max(self.last_ms, time_ms)
        if port is not None:
            self.ports.add(port)
        for s, v in zip(self.sets, values):
            s.add(v)
            if cap and len(s) > 2 * cap:
                keep = sorted(s)[:cap]
                s.clear()
                s.update(keep)

    def result(self, cap: int) -> tuple[Any, ...]:
        return (
            self.count,
            self.first_ms,
            self.last_ms,
            tuple(capped(self.ports, cap)),
            len(self.ports),
            *(tuple(capped(s, cap)) for s in self.sets),
        )

    def to_state(self) -> dict[str, Any]:
        """The state format written before the compact representation (every set a sorted list)."""
        return {
            "n": self.count,
            "f": self.first_ms,
            "l": self.last_ms,
            "p": sorted(self.ports),
            "s": [sorted(s) for s in self.sets],
        }


# Few distinct requests (so windows share tuples, as with Enricher.values) and many ports, so that
# slots go through every form: one value, a small tuple, a set, and trimmed sets.
_pool = [
    tuple(f"{chr(97 + (i * (k + 3)) % 23)}{(i * (k + 1)) % 7}" for k in range(N_SETS)) for i in range(40)
]
many_rows = st.lists(
    st.tuples(
        st.integers(0, 599_999),
        st.none() | st.integers(0, 12) | st.integers(0, 65535),
        st.sampled_from(_pool)
        | st.tuples(*[st.sampled_from(["", "a", "b", "é", "z"]) | st.text(max_size=2)] * N_SETS),
    ),
    max_size=400,
)
caps = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9, 128])


@given(many_rows, caps)
def test_compact_agg_equals_plain_sets(rows: list[Row], cap: int) -> None:
    agg, plain = WindowAgg(), PlainAgg()
    for i, (t, port, values) in enumerate(rows):
        agg.add(t, port, values, cap)
        plain.add(t, port, values, cap)
        if i % 7 == 0 or i == len(rows) - 1:
            assert agg.result(cap) == plain.result(cap)
            assert agg.port_count(cap) == (min(len(plain.ports), cap) if cap else len(plain.ports))
            assert agg.ports == plain.ports
            assert agg.capped_ports(cap) == capped(plain.ports, cap)
            assert agg.capped_sets(cap) == [capped(s, cap) for s in plain.sets]
            for mine, true in zip(agg.sets, plain.sets):
                assert capped(mine, cap) == capped(true, cap)
                assert not cap or len(mine) <= 2 * cap  # bounded between trims


@given(many_rows, caps)
def test_compact_state_round_trips_and_reads_the_earlier_format(rows: list[Row], cap: int) -> None:
    agg, plain = WindowAgg(), PlainAgg()
    for t, port, values in rows:
        agg.add(t, port, values, cap)
        plain.add(t, port, values, cap)
    again = WindowAgg.from_state(orjson.loads(orjson.dumps(agg.to_state())))
    assert again.result(cap) == plain.result(cap)
    assert orjson.dumps(again.to_state()) == orjson.dumps(agg.to_state())
    old = WindowAgg.from_state(orjson.loads(orjson.dumps(plain.to_state())))
    assert old.result(cap) == plain.result(cap)
    # and both go on folding like the reference
    for t, port, values in rows[:50]:
        again.add(t + 1, port, values, cap)
        old.add(t + 1, port, values, cap)
        plain.add(t + 1, port, values, cap)
    assert again.result(cap) == old.result(cap) == plain.result(cap)


@given(many_rows, st.randoms(use_true_random=False), caps)
def test_windows_sharing_request_tuples_stay_independent(
    rows: list[Row], rnd: random.Random, cap: int
) -> None:
    """The same (shared) values tuple in many windows: one window growing never changes another."""
    aggs = [WindowAgg() for _ in range(3)]
    plains = [PlainAgg() for _ in range(3)]
    for t, port, values in rows:
        i = rnd.randrange(3)
        aggs[i].add(t, port, values, cap)
        plains[i].add(t, port, values, cap)
    for agg, plain in zip(aggs, plains):
        assert agg.result(cap) == plain.result(cap)
    assert all(values == tuple(v) for values in _pool for v in [values])  # the shared tuples are untouched


def test_one_request_window_keeps_the_shared_tuple() -> None:
    values = _pool[0]
    agg = WindowAgg()
    agg.add(5, 443, values, 128)
    agg.add(6, 443, values, 128)
    assert agg._sets is values and agg._ports == 443
    agg.add(7, 80, _pool[1], 128)
    assert agg._sets is not values and values == _pool[0]
    assert agg.ports == {80, 443}


def test_slots_grow_from_value_to_tuple_to_set() -> None:
    agg = WindowAgg()
    for p in range(SMALL + 3):
        agg.add(p, 1000 - p, _pool[p], 0)
        if p == 0:
            assert agg._ports == 1000
        elif p < SMALL:
            assert agg._ports == tuple(range(1000 - p, 1001))
        else:
            assert agg._ports == set(range(1000 - p, 1001))
    assert agg.distinct_ports() == SMALL + 3


@given(many_rows, st.randoms(use_true_random=False))
def test_equal_contents_store_equal_bytes(rows: list[Row], rnd: random.Random) -> None:
    """Uncapped, the kept sets do not depend on arrival order, and neither do the stored bytes."""
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    a, b = WindowAgg(), WindowAgg()
    for t, port, values in rows:
        a.add(t, port, values, 0)
    for t, port, values in shuffled:
        b.add(t, port, values, 0)
    assert orjson.dumps(a.to_state()) == orjson.dumps(b.to_state())
