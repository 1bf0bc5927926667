"""RateLimitedLog: one line per kind per interval, carrying the count since the last line."""

from __future__ import annotations

import logging

import pytest

from streams.kafka.ratelog import RateLimitedLog


def test_one_line_per_interval_per_kind_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    notes = RateLimitedLog(logging.getLogger("t-ratelog"), interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "t-ratelog"):
        assert notes.note("a", 2, "a happened")
        assert not notes.note("a", 3, "a happened")
        assert notes.note("b", 1, "b happened")  # another kind has its own interval
        now[0] = 10.0
        assert notes.note("a", 4, "a happened")
    assert [r.getMessage() for r in caplog.records] == [
        "a happened (2 since the last such line)",
        "b happened (1 since the last such line)",
        "a happened (7 since the last such line)",
    ]
