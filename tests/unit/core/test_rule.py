"""streams.core.rule: the published rule's parameters, and the combinations that cannot work refused
with a reason (settings turns each into a ConfigError naming the flag)."""

from __future__ import annotations

import pytest

from streams.core.rule import (
    MIN_MAX_ALERT_BYTES,
    MIN_MAX_RECORD_BYTES,
    MIN_MAX_SET_BYTES,
    RuleConfigError,
    RuleParams,
)


def test_the_defaults_are_the_published_rule() -> None:
    rule = RuleParams()
    assert (rule.bin_ms, rule.threshold, rule.max_set_size, rule.plus_as_space) == (600_000, 30, 128, True)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"bin_ms": 0}, "bin must be positive"),
        ({"threshold": 0}, "threshold must be at least 1"),
        ({"max_set_size": -1}, "max set size must be >= 0"),
        ({"max_value_bytes": 63}, "max value bytes must be at least 64"),
        ({"max_record_bytes": MIN_MAX_RECORD_BYTES - 1}, "max record bytes must be at least"),
        ({"max_alert_bytes": MIN_MAX_ALERT_BYTES - 1}, "max alert bytes must be between"),
        ({"max_alert_bytes": 100_000, "max_record_bytes": 90_000}, "max alert bytes must be between"),
        ({"max_set_bytes": MIN_MAX_SET_BYTES - 1}, "max set bytes must be between"),
        ({"max_set_bytes": 40_000}, "max set bytes must be between"),
        ({"threshold": 200}, "can never be reached: portCount is capped at max set size 128"),
    ],
)
def test_combinations_that_cannot_work_are_refused(changes: dict[str, int], fragment: str) -> None:
    with pytest.raises(RuleConfigError, match=fragment):
        RuleParams(**changes)  # type: ignore[arg-type]


def test_an_unlimited_set_allows_any_threshold_and_the_bounds_may_meet() -> None:
    assert RuleParams(threshold=5000, max_set_size=0).threshold == 5000
    same = RuleParams(max_record_bytes=MIN_MAX_RECORD_BYTES, max_alert_bytes=MIN_MAX_ALERT_BYTES)
    assert same.max_set_bytes <= same.max_alert_bytes <= same.max_record_bytes
