"""Integration tier: fixtures that reach the real Kafka broker and Redis server.

`make test` starts both services (deploy/services.sh) and exports PORTSCAN_BROKERS and PORTSCAN_REDIS_URL.
A service that does not answer is a test failure, never a skip: a green run must mean the services were
really exercised. Every test in this folder is marked `integration` by the collection hook below, so new
files get the marker without remembering it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .workerkit import Job, own_topics

HERE = Path(__file__).resolve().parent
DEFAULT_BROKERS = "127.0.0.1:9092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The reachability checks must fail within ~15 s when a service is down or the address is wrong.
KAFKA_PROBE_TIMEOUT_S = 10.0
REDIS_PROBE_TIMEOUT_S = 5.0
KAFKA_CLIENT_LOG = logging.getLogger("tests.integration.librdkafka")
START_HINT = "start the services with `make services-up` (or run the suite through `make test`)"

T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder (and below) `integration`."""
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def admin_client(brokers: str) -> AdminClient:
    """An AdminClient that gives up quickly on an unreachable address instead of retrying for minutes.

    librdkafka's own log lines go through Python logging, so pytest shows them with a failing test only.
    """
    return AdminClient(
        {
            "bootstrap.servers": brokers,
            "socket.connection.setup.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 1000,
            "logger": KAFKA_CLIENT_LOG,  # type: ignore[dict-item]
        }
    )


def kafka_problem(address: str) -> str | None:
    """None if a broker at `address` answers a metadata request, else what went wrong.

    The probe client is dropped before this returns, so a dead address leaves no client reconnecting (and
    logging) for the rest of the run.
    """
    try:
        metadata = admin_client(address).list_topics(timeout=KAFKA_PROBE_TIMEOUT_S)
    except KafkaException as exc:
        return f"did not answer a metadata request within {KAFKA_PROBE_TIMEOUT_S:.0f}s ({exc.args[0]})"
    return None if metadata.brokers else "answered but lists no brokers"


def redis_problem(url: str) -> str | None:
    """None if the Redis server at `url` answers PING, else what went wrong."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_PROBE_TIMEOUT_S, socket_timeout=REDIS_PROBE_TIMEOUT_S
    )
    try:
        answered = client.ping()
    except redis.RedisError as exc:
        return f"did not answer PING ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    return None if answered is True else f"answered PING with {answered!r}"


@pytest.fixture(scope="session")
def brokers() -> str:
    """Bootstrap servers of the real Kafka broker (PORTSCAN_BROKERS), checked to answer."""
    address = os.environ.get("PORTSCAN_BROKERS", DEFAULT_BROKERS)
    problem = kafka_problem(address)
    if problem is not None:
        pytest.fail(f"Kafka broker at {address!r} (PORTSCAN_BROKERS) {problem}; {START_HINT}", pytrace=False)
    return address


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server (PORTSCAN_REDIS_URL), checked to answer PING."""
    url = os.environ.get("PORTSCAN_REDIS_URL", DEFAULT_REDIS_URL)
    problem = redis_problem(url)
    if problem is not None:
        pytest.fail(f"Redis at {url!r} (PORTSCAN_REDIS_URL) {problem}; {START_HINT}", pytrace=False)
    return url


@pytest.fixture(scope="session")
def kafka_admin(brokers: str) -> AdminClient:
    """One AdminClient for the session (the broker has already answered)."""
    return admin_client(brokers)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group/key name no other test (or earlier run) uses: it-<test name>-<8 hex digits>."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    return f"it-{slug}-{uuid.uuid4().hex[:8]}"


def topic_partition_counts(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    """Every topic the cluster knows, with its partition count.

    Lists all topics instead of asking for one by name: a metadata request that names a topic may make a
    broker with auto.create.topics.enable create it, which would spoil "does it exist yet?" checks.
    """
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}


class KafkaTopics:
    """Creates topics for one test and deletes them (and other tracked topics and groups) at its end."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin
        self._names: list[str] = []
        self._groups: list[str] = []

    def create(
        self,
        name: str,
        partitions: int = 1,
        replication: int = 1,
        config: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Create `name` and wait until the broker confirms it."""
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config or {})],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        self._names.append(name)
        futures[name].result(timeout=timeout)
        return name

    def track(self, *names: str) -> None:
        """Delete these topics at the end of the test too (for topics that something else creates)."""
        self._names.extend(n for n in names if n not in self._names)

    def track_group(self, *groups: str) -> None:
        """Delete these consumer groups at the end of the test (their consumers must be closed by then)."""
        self._groups.extend(g for g in groups if g not in self._groups)

    def wait_for(self, name: str, timeout: float = 15.0) -> int:
        """Wait until `name` shows up in cluster metadata; return its partition count."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.partition_counts()
            if name in counts:
                return counts[name]
            if time.monotonic() >= deadline:
                raise AssertionError(f"topic {name!r} not in cluster metadata after {timeout:.0f}s")
            time.sleep(0.2)

    def partition_counts(self) -> dict[str, int]:
        """Every topic in the cluster with its partition count (see topic_partition_counts)."""
        return topic_partition_counts(self.admin)

    def delete_all(self, timeout: float = 15.0) -> None:
        """Best effort: a topic or group that is gone or never got created is not an error."""
        futures: list[Future[Any]] = []
        if self._groups:
            futures += self.admin.delete_consumer_groups(list(self._groups), request_timeout=timeout).values()
        if self._names:
            futures += self.admin.delete_topics(
                list(self._names), operation_timeout=timeout, request_timeout=timeout
            ).values()
        for future in futures:
            try:
                future.result(timeout=timeout)
            except Exception:
                pass  # cleanup must not mask the test's own outcome
        self._names.clear()
        self._groups.clear()


@pytest.fixture
def kafka_topics(kafka_admin: AdminClient) -> Iterator[KafkaTopics]:
    """Topic helper whose topics are deleted when the test ends, pass or fail."""
    topics = KafkaTopics(kafka_admin)
    try:
        yield topics
    finally:
        topics.delete_all()


class AsyncRunner(Protocol):
    """Type of the `run_async` fixture."""

    def __call__(self, make_coro: Callable[[], Awaitable[T]], timeout: float) -> T: ...


def run_async_bounded(make_coro: Callable[[], Awaitable[T]], timeout: float, grace: float = 15.0) -> T:
    """Run a coroutine under `asyncio.run` with a hard wall-clock bound.

    asyncio.wait_for cancels the coroutine after `timeout` seconds, and its `finally` blocks (client and
    app shutdown) still run. The event loop runs in a daemon thread that is joined for `timeout + grace`
    seconds, so even code that blocks the loop without awaiting cannot hang the test run: the test fails
    and the thread is abandoned.
    """
    outcome: dict[str, Any] = {}

    async def bounded() -> T:
        return await asyncio.wait_for(make_coro(), timeout)

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(bounded())
        except BaseException as exc:  # re-raised in the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="integration-event-loop", daemon=True)
    thread.start()
    thread.join(timeout + grace)
    if thread.is_alive():
        pytest.fail(
            f"event loop still running {timeout + grace:.0f}s after start (shutdown hung?)", pytrace=False
        )
    if "error" in outcome:
        error: BaseException = outcome["error"]
        if isinstance(error, TimeoutError):
            raise AssertionError(f"async test body did not finish within {timeout:.0f}s") from error
        raise error
    return outcome["value"]  # type: ignore[no-any-return]


@pytest.fixture
def run_async() -> AsyncRunner:
    """`run_async(lambda: coro(...), timeout)`: see run_async_bounded."""
    return run_async_bounded


@pytest.fixture
def job(
    brokers: str, unique_name: str, tmp_path: Path, kafka_admin: AdminClient, kafka_topics: KafkaTopics
) -> Iterator[Job]:
    """The test's stream job (its own app id and topics, its worker's log in `tmp_path/job.log`); at the
    end: workers stopped, readers closed, its topics and groups deleted, the job log's tail on stderr
    (which pytest shows only when the test failed)."""
    the_job = Job(unique_name, brokers, tmp_path)
    try:
        yield the_job
    finally:
        the_job.close()
        forget_job(the_job, kafka_admin, kafka_topics)


def forget_job(job: Job, kafka_admin: AdminClient | None, kafka_topics: KafkaTopics | None) -> None:
    """After a closed job: its topics and groups deleted at the session's end (with `kafka_admin`, the
    session broker's client; None for a private broker, which goes with its data), its log's tail on
    stderr."""
    if kafka_admin is not None and kafka_topics is not None:
        try:
            kafka_topics.track(*own_topics(kafka_admin, job.name))
        except Exception as exc:  # cleanup is best effort
            sys.stderr.write(f"could not list topics for cleanup: {exc}\n")
        kafka_topics.track_group(job.name, *job.groups())
    sys.stderr.write(f"===== job log {job.log} (tail)\n{job.log_tail()}\n")
