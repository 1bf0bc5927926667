"""The scenario generator itself, without services: seeds name scenarios exactly, the partitioner matches
Kafka's, and the input is what the scenario says (layout, garbage, the replay answer)."""

from __future__ import annotations

from collections import Counter

import pytest

from streams.core.records import Reason

from .scenario import expected, make_scenario, messages, murmur2, murmur2_partition

NOW_MS = 1_796_300_000_000  # a fixed wall clock (2026-12-03): the data is placed relative to it


def test_murmur2_matches_kafkas_test_vectors() -> None:
    """Kafka's UtilsTest.testMurmur2 cases (signed Java ints, here unsigned)."""
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF, key
    assert murmur2_partition(b"21", 8) == (java_positive := -973932308 & 0x7FFFFFFF) % 8, java_positive


@pytest.mark.parametrize("seed", [7, 27])
def test_a_seed_names_one_scenario(seed: int) -> None:
    assert make_scenario(seed) == make_scenario(seed)
    assert messages(make_scenario(seed), NOW_MS) == messages(make_scenario(seed), NOW_MS)


def test_the_input_follows_the_layout() -> None:
    """Over many seeds: empty partitions get no event, late ones only in the last chunk; keyed messages
    carry the routing key of their partition; every garbage kind has the reason replay gives it."""
    reasons: Counter[str] = Counter()
    for seed in range(1, 25):
        s = make_scenario(seed)
        msgs = messages(s, NOW_MS)
        for m in msgs:
            if m.kind == "event":
                assert m.partition not in s.empty
                assert m.partition not in s.late or m.chunk == s.chunks - 1
                if s.keyed:
                    assert m.key is not None and murmur2_partition(m.key, s.partitions) == m.partition
            elif m.reason is not None:
                reasons[m.reason] += 1
        assert len({m.chunk for m in msgs}) == s.chunks
        assert [m.chunk for m in msgs] == sorted(m.chunk for m in msgs), "fed chunk by chunk"
    assert set(reasons) == {
        Reason.INVALID_JSON.value,
        Reason.UNDECODABLE.value,
        Reason.NOT_AN_OBJECT.value,
        Reason.MISSING_FIELD.value,
        Reason.INVALID_TIME.value,
        Reason.INVALID_FIELD.value,
        Reason.FUTURE_TIME.value,
        Reason.FIELD_COUNT.value,
    }, reasons


def test_most_scenarios_have_alerts_to_check() -> None:
    """The data is dense enough in scans that a scenario nearly always has alerts to compare."""
    with_alerts = sum(bool(expected(messages(make_scenario(seed), NOW_MS))) for seed in range(1, 13))
    assert with_alerts >= 11
