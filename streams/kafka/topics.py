"""The job's topics: their names, what each needs, and creating them with confluent-kafka's AdminClient
(idempotent: existing topics are kept; `--create-topics false` checks them instead)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.errors import JobError
from streams.kafka.client_config import librdkafka_client
from streams.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0


class TopicsError(JobError):
    """Topics that are missing or do not fit the job; the message names each."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def repartition_topic(settings: Settings) -> str:
    """Internal topic keyed by (cIP, Computer, sIP), used when the input is not keyed that way."""
    return f"{settings.app_id}-w3ciislog-by-key"


def changelog_topic(settings: Settings) -> str:
    """faust's changelog of the window table (RocksDB state)."""
    return f"{settings.app_id}-windows-changelog"


def admin(settings: Settings) -> AdminClient:
    # log_level 0: a broker that is down is reported once, by us, not by librdkafka on every retry
    return AdminClient(librdkafka_client(settings, **{"socket.timeout.ms": 10_000, "log_level": 0}))


def partition_counts(client: AdminClient) -> dict[str, int]:
    """Partition count of every topic. Asks for all topics at once: a metadata request naming a
    missing topic would make a broker with auto.create.topics.enable create it with defaults."""
    md = client.list_topics(timeout=TIMEOUT_S)
    return {name: len(meta.partitions) for name, meta in md.topics.items() if meta.error is None}


def leader_topic(settings: Settings) -> str:
    """faust's leader-assignor topic (one partition), which every faust app uses."""
    return f"{settings.app_id}-__assignor-__leader"


def specs(settings: Settings, source_partitions: int) -> list[TopicSpec]:
    """Every topic the job uses. Alerts are compacted: the latest revision per AlertId survives."""
    retention = str(max(settings.retention * 2, 7 * 86_400_000))
    out = [
        TopicSpec(settings.input_topic, settings.partitions, {}),
        TopicSpec(settings.alert_topic, settings.partitions, {"cleanup.policy": "compact"}),
        TopicSpec(settings.dlq_topic, settings.partitions, {"retention.ms": retention}),
        TopicSpec(leader_topic(settings), 1, {}),
    ]
    if not settings.input_keyed:
        out.append(TopicSpec(repartition_topic(settings), source_partitions, {"retention.ms": retention}))
    if settings.store_kind().has_changelog:
        out.append(TopicSpec(changelog_topic(settings), source_partitions, {"cleanup.policy": "compact"}))
    if settings.allowlist_topic:  # one entry per key, read whole by every worker
        out.append(TopicSpec(settings.allowlist_topic, 1, {"cleanup.policy": "compact"}))
    if settings.notify_topic:  # the page and then the summary of one notification share a key
        notify = {"cleanup.policy": "compact,delete", "retention.ms": retention}  # read back at restarts
        out.append(TopicSpec(settings.notify_topic, settings.partitions, notify))
    return out


def check_existing(settings: Settings, counts: dict[str, int]) -> int:
    """Managed-cluster mode (`--create-topics false`): every topic must exist, the internal ones with
    the detector source's partition count; returns that count, or raises naming each problem."""
    source = settings.input_topic if settings.input_keyed else repartition_topic(settings)
    source_partitions = counts.get(source, settings.partitions)
    problems = []
    for spec in specs(settings, source_partitions):
        have = counts.get(spec.name)
        if have is None:
            config = ", ".join(f"{k}={v}" for k, v in spec.config.items()) or "defaults"
            problems.append(f"{spec.name} is missing (create it with {spec.partitions} partitions, {config})")
        elif spec.name == changelog_topic(settings) and have != source_partitions:
            problems.append(f"{spec.name} has {have} partitions, needs {source_partitions} (as {source})")
    if problems:
        raise TopicsError("--create-topics false: " + "; ".join(problems))
    return source_partitions


def ensure_topics(settings: Settings) -> int:
    """Create whatever is missing; return the partition count of the detector's source topic.

    The window table's changelog must have as many partitions as the topic the detector consumes
    (the input when it is keyed, else the repartition topic).
    """
    client = admin(settings)
    counts = partition_counts(client)
    if not settings.create_topics:
        return check_existing(settings, counts)
    if settings.input_keyed:
        source_partitions = counts.get(settings.input_topic, settings.partitions)
    else:
        source_partitions = counts.get(repartition_topic(settings), settings.partitions)
    todo = [s for s in specs(settings, source_partitions) if s.name not in counts]
    if todo:
        new = [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=settings.replication, config=s.config
            )
            for s in todo
        ]
        for name, future in client.create_topics(new, operation_timeout=TIMEOUT_S).items():
            try:
                future.result(timeout=TIMEOUT_S)
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another worker created it meanwhile
                raise
    changelog = counts.get(changelog_topic(settings))
    if settings.store_kind().has_changelog and changelog not in (None, source_partitions):
        raise TopicsError(
            f"changelog topic {changelog_topic(settings)} has {changelog} partitions but the detector's "
            f"source has {source_partitions}; they must match (use a new --app-id after repartitioning)"
        )
    return source_partitions
