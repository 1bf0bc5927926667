"""The window aggregate: capped sets keep the smallest values, and partial aggregates merge in any order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from streams.core.aggregate import N_SETS, WindowAgg, capped

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


@given(
    rows_strategy, st.randoms(use_true_random=False), st.integers(1, 5), st.sampled_from([0, 1, 3, 8, 128])
)
def test_order_and_partition_independent(rows: list[Row], rnd: random.Random, parts: int, cap: int) -> None:
    whole = fold(rows, cap)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    pieces: list[list[Row]] = [[] for _ in range(parts)]
    for row in shuffled:
        pieces[rnd.randrange(parts)].append(row)
    partials = [fold(p, cap) for p in pieces]
    rnd.shuffle(partials)
    merged = WindowAgg()
    for p in partials:
        merged.merge(p, cap)
    assert merged.result(cap) == whole.result(cap)


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
