"""streams.kafka.topics: which topics the job needs for its settings, with what configuration, and
what `--create-topics false` says about a cluster that lacks them (no broker needed: the partition
counts are given)."""

from __future__ import annotations

import pytest

from streams.kafka.topics import (
    TopicsError,
    changelog_topic,
    check_existing,
    leader_topic,
    repartition_topic,
    specs,
)
from streams.settings import Settings

WEEK_MS = str(7 * 86_400_000)


def by_name(settings: Settings, source_partitions: int = 4) -> dict[str, tuple[int, dict[str, str]]]:
    return {s.name: (s.partitions, s.config) for s in specs(settings, source_partitions)}


def test_the_default_job_repartitions_and_keeps_a_changelog() -> None:
    settings = Settings(app_id="job", partitions=3)
    topics = by_name(settings, source_partitions=6)
    assert topics == {
        "w3ciislog": (3, {}),
        "iis-portscan-alerts": (3, {"cleanup.policy": "compact"}),  # the latest revision per AlertId
        "w3ciislog-dlq": (3, {"retention.ms": WEEK_MS}),
        "job-__assignor-__leader": (1, {}),
        "job-w3ciislog-by-key": (6, {"retention.ms": WEEK_MS}),
        "job-windows-changelog": (6, {"cleanup.policy": "compact"}),  # as many as the detector's source
    }
    assert (repartition_topic(settings), changelog_topic(settings), leader_topic(settings)) == (
        "job-w3ciislog-by-key",
        "job-windows-changelog",
        "job-__assignor-__leader",
    )


def test_keyed_input_on_redis_needs_neither_repartition_nor_changelog_but_the_soc_topics() -> None:
    settings = Settings(
        input_keyed=True,
        store="redis://127.0.0.1:6379/0",
        allowlist_topic="allow",
        notify_topic="pages",
        retention=30 * 86_400_000,
    )
    topics = by_name(settings)
    assert "iis-portscan-w3ciislog-by-key" not in topics and "iis-portscan-windows-changelog" not in topics
    assert topics["allow"] == (1, {"cleanup.policy": "compact"})
    assert topics["pages"] == (4, {"cleanup.policy": "compact,delete", "retention.ms": str(60 * 86_400_000)})


def test_managed_clusters_get_every_missing_or_misfit_topic_named() -> None:
    settings = Settings(app_id="job", create_topics=False)
    complete = {name: partitions for name, (partitions, _) in by_name(settings, 8).items()}
    assert check_existing(settings, complete) == 8  # the repartition topic's count
    broken = {**complete, "job-windows-changelog": 4}
    del broken["w3ciislog-dlq"]
    with pytest.raises(TopicsError) as caught:
        check_existing(settings, broken)
    text = str(caught.value)
    assert text.startswith("--create-topics false: ")
    assert "w3ciislog-dlq is missing (create it with 4 partitions, retention.ms=" in text
    assert "job-windows-changelog has 4 partitions, needs 8 (as job-w3ciislog-by-key)" in text
