"""Topic names and creation with confluent-kafka's AdminClient (idempotent: existing topics are kept)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import JobError, ServiceUnreachable
from streams.kafka.client_config import kafka_client, librdkafka_client
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


def reach_kafka(settings: Settings) -> None:
    """Wait up to --connect-timeout for the brokers to answer a metadata request.

    Stops at once, with one line naming the cause, when waiting cannot help: the broker refused our SASL
    credentials, its certificate does not verify against ssl.ca.location (unknown CA, wrong host), it
    rejected our client certificate, or security.protocol does not match the listener (TLS spoken to a
    plaintext port, plaintext to a TLS port). librdkafka reports these only through its error callback and
    its log, so both are captured here (never printed) and classified; every message is scrubbed of the
    configured secrets.
    """
    import re
    import time

    from streams.errors import AuthError
    from streams.kafka.client_config import ClientConfigError

    client = kafka_client(settings)
    protocol, props, where = client.protocol, client.props, f"Kafka at {settings.brokers}"
    seen: list[str] = []  # librdkafka's error and log texts, oldest first

    class Capture:  # librdkafka's `logger`: keeps its lines instead of printing one per retry
        def log(self, _level: int, fmt: str, *args: object) -> None:
            seen.append(fmt % args if args else fmt)

    def on_error(error: KafkaError) -> None:
        seen.append(error.str())

    def detail(text: str, after: str) -> str:
        """librdkafka's reason after `after`, without its "(after 3ms in state X)" tail."""
        text = text.split(after, 1)[-1].strip(" :") if after else text
        return re.sub(r"\s*\(after \d+ms in state \w+\)\s*$", "", text)

    def cause() -> JobError | None:
        """The first thing seen that retrying cannot fix, as the error to raise."""
        plaintext_closed = sasl_expected = 0
        for text in seen:
            if "SASL authentication error" in text:
                reason = detail(text, "SASL authentication error")
                if client.mechanism == "OAUTHBEARER":
                    return AuthError(
                        f"{where}: authentication failed (SASL OAUTHBEARER): the broker refused the token "
                        f"from {props['sasl.oauthbearer.token.endpoint.url']}: {reason}"
                    )
                return AuthError(
                    f"{where}: authentication failed (SASL {client.mechanism}, user "
                    f"{props.get('sasl.username', '')!r}): {reason}; check sasl.username and sasl.password"
                )
            token = re.search(r"Failed to retrieve OIDC token from \S+ (.*\((40[013])\))", text)
            if token:  # the token endpoint refused our client credentials (not an outage: 400, 401, 403)
                return AuthError(
                    f"{where}: authentication failed (SASL OAUTHBEARER): the token endpoint "
                    f"{props['sasl.oauthbearer.token.endpoint.url']} refused client id "
                    f"{props['sasl.oauthbearer.client.id']!r}: {token.group(1)}; check "
                    "sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret"
                )
            if "SASL" in text and "mechanism handshake failed" in text:
                return ClientConfigError(
                    f"{where}: the listener does not accept sasl.mechanism={client.mechanism}: "
                    f"{detail(text, 'mechanism handshake failed')}"
                )
            if "certificate verify failed" in text:
                ca = props.get("ssl.ca.location", "the system's CA certificates")
                return AuthError(
                    f"{where}: TLS certificate verify failed: the broker's certificate is not signed by a CA "
                    f"in ssl.ca.location ({ca}) (unknown CA) or does not name the host "
                    f"({detail(text, 'certificate verify failed').split(',')[0]})"
                )
            alert = re.search(
                r"alert (bad certificate|unknown ca|certificate required|certificate unknown|"
                r"certificate expired|certificate revoked|unsupported certificate|access denied)",
                text,
            )
            if alert:
                if "ssl.certificate.location" not in props:
                    return AuthError(
                        f"{where}: the broker requires a client certificate (TLS alert {alert.group(1)}): "
                        "set ssl.certificate.location and ssl.key.location"
                    )
                return AuthError(
                    f"{where}: the broker rejected our client certificate "
                    f"(ssl.certificate.location={props['ssl.certificate.location']}): TLS alert "
                    f"{alert.group(1)}: it does not trust the certificate's issuer, or it expired"
                )
            if client.uses_tls and re.search(
                r"PLAINTEXT broker listener|wrong version number|packet length too long|record layer failure",
                text,
            ):
                return ClientConfigError(
                    f"{where}: TLS spoken to a plaintext port (security.protocol={protocol}, but the TLS "
                    "handshake got no TLS answer): use the broker's TLS listener, or PLAINTEXT/SASL_PLAINTEXT"
                )
            if not client.uses_tls and (
                "connecting to a SSL listener" in text
                or re.search(r"closed by peer.*in state APIVERSION_QUERY", text)
            ):
                plaintext_closed += 1  # a broker shutting down may do it once; a TLS port does it every time
                if plaintext_closed >= 3:
                    return ClientConfigError(
                        f"{where}: the broker closed the connection at our first request: a TLS port spoken "
                        f"in plaintext? (security.protocol={protocol}): use SSL or SASL_SSL with "
                        "ssl.ca.location as the listener requires"
                    )
            if client.mechanism is None and re.search(r"closed by peer.*in state UP", text):
                sasl_expected += 1  # it answered ApiVersions, then dropped an unauthenticated request
                if sasl_expected >= 3:
                    return ClientConfigError(
                        f"{where}: the broker closes the connection after our first request: does the "
                        f"listener require SASL? (security.protocol={protocol}): use SASL_SSL or "
                        "SASL_PLAINTEXT with sasl.mechanism, sasl.username and sasl.password"
                    )
        return None

    seconds = settings.connect_timeout / 1000
    admin_client = AdminClient(
        {
            **client.librdkafka(),
            "bootstrap.servers": settings.brokers,
            "socket.timeout.ms": 10_000,
            "logger": Capture(),  # type: ignore[dict-item]
            "log_level": 6,
            "error_cb": on_error,  # type: ignore[dict-item]
        }
    )
    deadline = time.monotonic() + seconds
    reason = "no answer"
    while True:
        try:
            admin_client.list_topics(timeout=max(0.05, min(0.5, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            reason = error.str() if isinstance(error, KafkaError) else str(error)
        admin_client.poll(0)  # serves the error callback and the log lines
        found = cause()
        if found is not None:
            raise type(found)(client.scrub(str(found))) from None
        if time.monotonic() >= deadline:
            break
    last = next((t for t in reversed(seen) if "brokers are down" not in t), reason)
    last = re.sub(r"^\w+ \[rdkafka#\S+\] \[thrd:[^\]]*\]: ", "", last)  # a log line's prefix
    raise ServiceUnreachable(
        client.scrub(f"cannot reach Kafka at {settings.brokers} within {seconds:g}s ({detail(last, '')})")
    ) from None


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
