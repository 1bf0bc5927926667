"""Shared test configuration: a Hypothesis profile fit for a 2-core machine that also runs Kafka, and the
order in which parallel runners (pytest-xdist) take the tests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first, then the other integration tests, then the rest (a stable sort): runners
    that take tests in this order start the long waits at once and fill the gaps with short tests,
    rather than end the run on a long test started last."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is not None:
            return 0
        return 1 if "integration" in item.path.parts else 2

    items.sort(key=rank)
