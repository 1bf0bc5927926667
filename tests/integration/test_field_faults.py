"""Faults seen in the field: the broker frozen or restarted under a running worker, Redis lost under a
worker that is then stopped, unreachable or refusing services at start, and workers leaving and rejoining
a group (the issue-12 fault behaviour).

Broker faults use a private broker (tests/integration/private_services.py) shared by this module's tests
that need one, so the shared broker other tests use is never frozen or stopped; Redis faults use a private
redis-server with AOF. Each test compares the latest revision per AlertId on the compared columns with
`replay` (core.offline.offline_alerts) over the same events, as test_worker.py does, and every wait is a
poll against a deadline; the only fixed waits are the faults' own durations (a 40 s freeze, a 5 s broker
outage).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.core.parse import event_from_record
from streams.core.records import IISEvent

from .private_services import PrivateKafka, closed_port, free_ports, private_kafka, private_redis
from .secure_kit import Outcome
from .secure_kit import run_to_exit as run_command_to_exit
from .workerkit import (
    BIN_MS,
    STEP_S,
    Job,
    TopicReader,
    WorkerProcess,
    describe_dead,
    expected_view,
    iso,
    keyed,
    latest,
    no_dead_letters,
    produce,
    recent_workload,
    values_of,
    view,
    view_diff,
)

FREEZE_S = 40.0  # how long the broker is frozen (SIGSTOP)
BROKER_DOWN_S = 5.0  # how long the broker is stopped before it starts again
SIGTERM_EXIT_S = 10.0  # a worker must exit this soon after SIGTERM, even while Redis is down
FAIL_FAST_S = 20.0  # a worker that cannot reach a service at start exits within this
STARTUP_S = 90.0  # worker start-up (topics, group, recovery) up to its first alerts, on a loaded host
RECOVERY_S = 120.0  # after a fault: the worker reconnects, rejoins and catches up
PARTITIONS = 4
CHURN_EVENTS, CHURN_PER_S = 24_000, 1_200  # two-worker churn: events, pace of the feed
FAULT_EVENTS, FAULT_HEAD = 24_000, 4_000  # broker faults: events in all, produced before the worker starts
FEED_PER_S = 2_000  # pace of the background feed
RETRY_WARNING = re.compile(r"(?i)^.*redis.*retr.*$", re.MULTILINE)  # "redis: ... failed ...; retrying in"


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kafka_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    """This module's private broker (started once; each test gets it running and thawed)."""
    with private_kafka(tmp_path_factory.mktemp("private-kafka")) as broker:
        yield broker


@pytest.fixture
def private_job(kafka_private: PrivateKafka, unique_name: str, tmp_path: Path) -> Iterator[Job]:
    """A job on the private broker; at the end the broker is thawed/started again, workers stopped, readers
    closed (the broker goes away with the module, and its topics with it)."""
    kafka_private.ensure_running()
    the_job = Job(unique_name, kafka_private.address, tmp_path)
    try:
        yield the_job
    finally:
        try:
            kafka_private.ensure_running()  # a failed test may have left it frozen or stopped
        except AssertionError as exc:
            sys.stderr.write(f"private broker: {exc}\n")
        the_job.close()
        sys.stderr.write(f"===== job log {the_job.log} (tail)\n{the_job.log_tail()}\n")
        sys.stderr.write(f"===== private broker log (tail)\n{kafka_private.log_tail()}\n")


# ---------------------------------------------------------------------------------------------- helpers


def wait_for_replay(
    reader: TopicReader,
    expected: dict[str, dict[str, Any]],
    alive: Callable[[], None],
    timeout: float,
    what: str,
) -> None:
    """Read alerts until the latest revisions equal `expected`; fail with the difference."""
    try:
        reader.poll_until(lambda got: view(latest(values_of(got)).values()) == expected, timeout, alive, what)
    except AssertionError as exc:
        got = view(latest(values_of(reader.records)).values())
        raise AssertionError(f"{exc}\n{view_diff(got, expected)}") from None


def hold(seconds: float, alive: Callable[[], None]) -> None:
    """Let `seconds` pass (a fault's duration), checking all the while that the worker runs."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        alive()
        time.sleep(min(0.5, left))
    alive()


def note(job: Job, text: str) -> None:
    """A line in the job log, between the workers' lines: what the test did when."""
    with job.log.open("ab") as fh:
        fh.write(f"\n===== {time.strftime('%X')} {text}\n".encode())


def wait_for_log(
    job: Job, start: int, pattern: re.Pattern[str], timeout: float, alive: Callable[[], None], what: str
) -> str:
    """The first line matching `pattern` that the job log gained after byte `start`."""
    deadline = time.monotonic() + job.budget(timeout)
    while True:
        found = pattern.search(job.log.read_bytes()[start:].decode(errors="replace"))
        if found is not None:
            return found.group(0)
        alive()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not in the worker's log within {timeout:.0f}s")
        time.sleep(0.2)


def start_worker(job: Job, env: dict[str, str], *args: str) -> WorkerProcess:
    """`iis-portscan worker ARGS`, stopped by the fixture's job.close() if the test does not stop it."""
    proc = WorkerProcess([sys.executable, "-m", "streams", "worker", *args], env, job.log, job.workdir)
    job.workers.append(proc)
    return proc


def all_alive(*workers: WorkerProcess) -> Callable[[], None]:
    def check() -> None:
        for w in workers:
            w.check_alive()

    return check


def run_to_exit(job: Job, env: dict[str, str], args: Sequence[str], limit: float = FAIL_FAST_S) -> Outcome:
    """`iis-portscan worker ARGS` that must exit by itself within `limit` seconds (secure_kit's runner)."""
    return run_command_to_exit(("worker", *args), env, job.workdir, job.log, limit)


def check_failed_fast(out: Outcome, service: str, address: str) -> None:
    """Non-zero exit, no traceback, a stderr line naming the service and its address."""
    tail = out.output[-3000:]
    assert out.code != 0, f"the worker exited 0 after {out.seconds:.1f}s:\n{tail}"
    assert "Traceback" not in out.output, f"the worker printed a traceback:\n{tail}"
    lines = [line for line in out.stderr.splitlines() if service.lower() in line.lower() and address in line]
    assert lines, (
        f"no line on stderr names {service} and {address} (exit {out.code} after {out.seconds:.1f}s):\n{tail}"
    )


def committed_offsets(admin: AdminClient, group: str, topic: str) -> dict[int, int]:
    """`group`'s committed offset per partition of `topic` (records it has processed for good)."""
    try:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)
        result = futures[group].result(timeout=15)
    except Exception:
        return {}
    return {
        tp.partition: tp.offset
        for tp in result.topic_partitions or ()
        if tp.topic == topic and tp.offset >= 0
    }


def committed(admin: AdminClient, group: str, topic: str) -> int:
    """How many records of `topic` `group` has committed, in all (0 if none yet)."""
    return sum(committed_offsets(admin, group, topic).values())


def end_offsets(admin: AdminClient, topic: str, partitions: int) -> dict[int, int]:
    """The offset after the last record of each partition of `topic`."""
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    return {tp.partition: f.result(timeout=15).offset for tp, f in admin.list_offsets(wanted).items()}


def group_members(admin: AdminClient, group: str, topic: str) -> dict[str, int] | None:
    """Member id -> how many partitions of `topic` it holds, while `group` is stable; else None."""
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    except Exception:
        return None
    if description.state != ConsumerGroupState.STABLE:
        return None
    return {
        m.member_id: sum(1 for tp in m.assignment.topic_partitions if tp.topic == topic)
        for m in description.members
    }


def wait_until(
    condition: Callable[[], bool], job: Job, timeout: float, alive: Callable[[], None], what: str
) -> None:
    deadline = time.monotonic() + job.budget(timeout)
    while not condition():
        alive()
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.3)


class PacedFeeder(threading.Thread):
    """Produces messages at a steady pace in the background; stops before `hold_at` until `release()`."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        messages: list[tuple[bytes | None, bytes]],
        per_second: float,
        hold_at: int,
        max_hold_s: float = 300.0,
    ) -> None:
        super().__init__(name="paced-feeder", daemon=True)
        self.brokers, self.topic, self.messages = brokers, topic, messages
        self.per_second, self.hold_at, self.max_hold_s = per_second, hold_at, max_hold_s
        self.sent = 0
        self.errors: list[str] = []
        self._release = threading.Event()
        self._halt = threading.Event()

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._halt.set()
        self._release.set()
        if self.ident is not None:  # started
            self.join(30)

    def run(self) -> None:
        def delivered(error: KafkaError | None, _msg: Any) -> None:
            if error is not None:
                self.errors.append(str(error))

        producer = Producer(
            {
                "bootstrap.servers": self.brokers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
            }
        )
        try:
            slice_ = max(1, int(self.per_second / 10))
            next_at = time.monotonic()
            for i, (key, value) in enumerate(self.messages):
                if self._halt.is_set():
                    return
                if i == self.hold_at:
                    producer.flush(30)
                    self._release.wait(self.max_hold_s)
                    next_at = time.monotonic()
                if i % slice_ == 0:  # one slice every 0.1 s
                    next_at += 0.1
                    self._halt.wait(max(0.0, next_at - time.monotonic()))
                    producer.poll(0)
                while True:
                    try:
                        producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                self.sent = i + 1
            left = producer.flush(60)
            if left:
                self.errors.append(f"{left} messages not delivered")
        except Exception as exc:  # reported by the test
            self.errors.append(f"{type(exc).__name__}: {exc}")


def delete_redis_keys(url: str, app_id: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"iis-portscan:{app_id}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


# ----------------------------------------------------------------------------- broker faults, mid-stream


def broker_fault_mid_stream(
    job: Job, tmp_path: Path, seed: int, fault: Callable[[WorkerProcess], None]
) -> None:
    """Keyed input, RocksDB. A first slice is produced and the worker started; once it has published
    alerts, the rest is fed at a steady pace, and `fault` strikes while the feed runs (the feed goes on
    into the fault, buffered by its producer, and holds at its middle until the fault is over). The same
    worker process ends with alerts equal to replay."""
    job.deadline = time.monotonic() + STARTUP_S + FREEZE_S + RECOVERY_S + 30
    records = recent_workload(FAULT_EVENTS, seed=seed)
    head, rest = records[:FAULT_HEAD], records[FAULT_HEAD:]
    hold_at = len(rest) // 2
    expected = expected_view(records)
    needs_after = set(expected) - set(expected_view(records[: FAULT_HEAD + hold_at]))
    assert len(expected) >= 5 and needs_after, "some alerts must need events fed after the fault"
    assert expected_view(head), "the first slice must raise alerts before the fault"

    env = job.env(input_keyed="true", partitions=str(PARTITIONS))
    job.cli("topics", "create", env=env)
    produce(job.brokers, job.input_topic, keyed(head))
    feeder = PacedFeeder(job.brokers, job.input_topic, keyed(rest), FEED_PER_S, hold_at)
    args = ("--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"))
    try:
        with job.worker(*args, env=env) as worker:
            pid = worker.proc.pid
            before = job.reader(job.alert_topic)
            before.poll_until(lambda got: len(got) >= 1, STARTUP_S, worker.check_alive, "first alerts")
            feeder.start()
            wait_until(lambda: feeder.sent >= hold_at // 3, job, STEP_S, worker.check_alive, "feed under way")
            before.poll(0.3)
            before.close()  # no reader may sit on a broker that goes away (its errors would fail its poll)
            fed_before = feeder.sent
            note(job, f"fault begins: {fed_before}/{len(rest)} fed, {len(before.records)} alerts read")
            fault(worker)
            note(job, f"fault over: {feeder.sent}/{len(rest)} fed")
            worker.check_alive()
            feeder.release()
            after = job.reader(job.alert_topic)
            wait_for_replay(
                after, expected, worker.check_alive, RECOVERY_S, "alerts == replay after the fault"
            )
            worker.check_alive()
            assert worker.proc.pid == pid
        feeder.join(job.budget(30))
        assert feeder.sent == len(rest) and not feeder.errors, (
            f"feeder: {feeder.sent}/{len(rest)} sent, {feeder.errors[:3]}"
        )
    finally:
        feeder.stop()

    seen_before = set(latest(values_of(before.records)))
    assert seen_before, "no alert before the fault"
    assert 0 < fed_before < len(rest) and seen_before < set(expected), (
        f"the fault did not land mid-stream: {fed_before}/{len(rest)} fed, "
        f"{len(seen_before)} of {len(expected)} alerts before it"
    )


@pytest.mark.slow
def test_broker_frozen_40s_mid_stream_equals_replay(
    private_job: Job, kafka_private: PrivateKafka, tmp_path: Path
) -> None:
    """The broker is frozen (SIGSTOP) for 40 s while the worker works, then continued: the worker keeps
    running (the same process) and its latest alerts equal replay."""

    def freeze(worker: WorkerProcess) -> None:
        kafka_private.freeze()
        try:
            hold(FREEZE_S, worker.check_alive)
        finally:
            kafka_private.thaw()

    broker_fault_mid_stream(private_job, tmp_path, 41, freeze)


@pytest.mark.slow
def test_broker_restarted_mid_stream_equals_replay(
    private_job: Job, kafka_private: PrivateKafka, tmp_path: Path
) -> None:
    """The broker is stopped (SIGTERM) while the worker works and started again 5 s later on the same data
    and port: the worker keeps running (the same process) and its latest alerts equal replay."""

    def restart(worker: WorkerProcess) -> None:
        kafka_private.stop()
        hold(BROKER_DOWN_S, worker.check_alive)
        kafka_private.start()

    broker_fault_mid_stream(private_job, tmp_path, 42, restart)


# ------------------------------------------------------------------------------------------- Redis faults


def straddle_split(records: list[dict[str, Any]], not_before: float = 0.35) -> tuple[int, int]:
    """Split points h1 < h2 of event-time ordered records: records[:h1] raise alerts, and the largest alert
    window starting after `not_before` of the records has its first event at h1 and events on both sides
    of h2. A worker that has read records[:h2] holds that window open: losing [h1, h2) changes its answer."""
    expected = expected_view(records)
    alerting = {(a["cIP"], a["Computer"], a["sIP"], a["TimeGenerated"]) for a in expected.values()}
    at: dict[tuple[str, str, str, str], list[int]] = {}
    for i, record in enumerate(records):
        event = event_from_record(record)
        assert isinstance(event, IISEvent)
        key = (event.cIP, event.Computer, event.sIP, iso(event.time_ms // BIN_MS * BIN_MS))
        if key in alerting:
            at.setdefault(key, []).append(i)
    late = [indices for indices in at.values() if indices[0] >= not_before * len(records)]
    assert late, "no alert window in the later part of the workload"
    indices = max(late, key=len)
    h1, h2 = indices[0], indices[len(indices) // 2]
    assert expected_view(records[:h1]), "the first part must raise alerts"
    assert expected_view(records[:h1] + records[h2:]) != expected
    return h1, h2


def test_sigterm_during_redis_outage_exits_within_10s(
    job: Job, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    """Redis (AOF) is killed under a working worker once a checkpoint has reached it; more events come,
    among them the first half of a scan's window. The worker retries (and says so), and SIGTERM ends it
    within 10 s. The rest of the events come, Redis is back with its AOF, and a new worker ends with
    alerts equal to replay: the stopped worker committed no input it could not checkpoint (had it, the
    scan's window would lack the events it held only in memory)."""
    job.deadline = time.monotonic() + 2 * STARTUP_S + STEP_S + SIGTERM_EXIT_S
    records = recent_workload(20_000, seed=43)
    h1, h2 = straddle_split(records)
    expected = expected_view(records)

    with private_redis(tmp_path / "redis") as server:
        env = job.env(input_keyed="true", partitions=str(PARTITIONS), store=server.url())
        data = ("--data-dir", str(tmp_path / "data"))
        job.cli("topics", "create", env=env)
        produce(job.brokers, job.input_topic, keyed(records[:h1]))
        alerts = job.reader(job.alert_topic)
        state = server.client()

        def checkpointed() -> int:
            return sum(1 for _ in state.scan_iter(match=f"iis-portscan:{job.name}:*", count=1000))

        # No idle advancement here: the scan's window stays open in this worker's memory.
        with job.worker("--idle-timeout", "0", *data, env=env) as worker:
            alerts.poll_until(lambda got: len(got) >= 1, STARTUP_S, worker.check_alive, "first alerts")
            wait_until(lambda: checkpointed() > 0, job, STEP_S, worker.check_alive, "a checkpoint in Redis")
            mark = job.log.stat().st_size
            server.kill()
            before_outage = end_offsets(
                kafka_admin, job.input_topic, PARTITIONS
            )  # all a checkpoint can have covered
            note(job, f"redis-server killed (SIGKILL); producing records {h1}..{h2}")
            produce(job.brokers, job.input_topic, keyed(records[h1:h2]))
            wait_for_log(job, mark, RETRY_WARNING, STEP_S, worker.check_alive, "a Redis retry warning")
            note(job, "SIGTERM to the worker")
            worker.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                worker.proc.wait(SIGTERM_EXIT_S)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(10)
                raise AssertionError(
                    f"the worker was still running {SIGTERM_EXIT_S:.0f}s after SIGTERM while Redis was down"
                ) from None
            exited_after = time.monotonic() - t0
        left = committed_offsets(kafka_admin, job.name, job.input_topic)
        note(job, f"exit {worker.proc.returncode} {exited_after:.1f}s after SIGTERM; committed {left}")
        beyond = {p: (o, before_outage[p]) for p, o in left.items() if o > before_outage[p]}
        assert not beyond, "the stopped worker committed input it could not checkpoint: " + ", ".join(
            f"partition {p} committed offset {o}, but held {e} records when Redis went down"
            for p, (o, e) in beyond.items()
        )

        produce(job.brokers, job.input_topic, keyed(records[h2:]))
        server.start()  # with its AOF: the state the stopped worker checkpointed
        keys = checkpointed()
        state.close()
        with job.worker("--idle-timeout", "3s", *data, env=env) as again:
            try:
                wait_for_replay(
                    alerts, expected, again.check_alive, STARTUP_S, "alerts == replay after restart"
                )
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\nthe stopped worker had read {h2} records; Redis came back with {keys} keys"
                ) from None


# ------------------------------------------------------------------------------ unreachable at start-up


def test_unreachable_kafka_at_start_fails_fast(unique_name: str, tmp_path: Path) -> None:
    """No broker at the address: one stderr line naming Kafka and the address, non-zero exit, no
    traceback, within 20 s (--connect-timeout 3s)."""
    with closed_port() as port:
        address = f"127.0.0.1:{port}"
        job = Job(unique_name, address, tmp_path)
        args = ("--brokers", address, "--connect-timeout", "3s", "--data-dir", str(tmp_path / "data"))
        out = run_to_exit(job, job.env(), args)
    check_failed_fast(out, "Kafka", address)


def test_unreachable_redis_at_start_fails_fast(job: Job, tmp_path: Path) -> None:
    """No Redis at the store's address: one stderr line naming Redis and the address, non-zero exit, no
    traceback, within 20 s (--connect-timeout 3s)."""
    with closed_port() as port:
        address = f"127.0.0.1:{port}"
        args = (
            "--store", f"redis://{address}/0",
            "--connect-timeout", "3s",
            "--data-dir", str(tmp_path / "data"),
        )  # fmt: skip
        out = run_to_exit(job, job.env(input_keyed="true"), args)
    check_failed_fast(out, "Redis", address)


def test_redis_wrong_password_fails_fast(job: Job, tmp_path: Path) -> None:
    """Redis refuses the password: a line about authentication, non-zero exit within 20 s (no retry loop,
    even with the default --connect-timeout), no traceback, and neither password in the output."""
    right, wrong = "s3cret-right", "s3cret-wrong"
    with private_redis(tmp_path / "redis", password=right, appendonly=False) as server:
        args = ("--store", server.url(password=wrong), "--data-dir", str(tmp_path / "data"))
        out = run_to_exit(job, job.env(input_keyed="true"), args)
    tail = out.output[-3000:]
    for secret in (right, wrong):
        assert secret not in out.output, "the worker printed a Redis password"
    assert out.code != 0, f"the worker exited 0 after {out.seconds:.1f}s:\n{tail}"
    assert "Traceback" not in out.output, f"the worker printed a traceback:\n{tail}"
    assert "authenticat" in out.output.lower(), f"no line mentions authentication:\n{tail}"


# ------------------------------------------------------------------------------------------------- churn


@pytest.mark.slow
def test_two_workers_churn_on_shared_redis_equals_replay(
    job: Job, redis_url: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    """Unkeyed input (router + repartition topic), Redis store, two workers. While events are fed at a
    steady pace, one worker is stopped (SIGTERM) and started again, then the other: each step waits for
    the group to have made progress (committed offsets of the detector) and for the restarted worker to
    hold partitions again. Both stop cleanly and the latest alerts equal replay."""
    job.deadline = time.monotonic() + 2 * STARTUP_S + 3 * STEP_S
    records = recent_workload(CHURN_EVENTS, seed=47)
    n = len(records)
    expected = expected_view(records)
    assert len(expected) >= 5
    env = job.env(input_keyed="false", partitions=str(PARTITIONS), store=redis_url)
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dead = job.reader(job.dlq_topic)  # none may come: every record is valid and within retention
    hold_at = int(0.8 * n)  # the feed's last fifth waits for the churn to end: events flow throughout
    feeder = PacedFeeder(
        job.brokers, job.input_topic, [(None, orjson.dumps(r)) for r in records], CHURN_PER_S, hold_at
    )

    def detected() -> int:
        return committed(kafka_admin, job.name, job.repartition_topic)

    def working(old: set[str]) -> bool:
        """Two members in a stable group, each holding detector partitions, one of them not in `old`."""
        members = group_members(kafka_admin, job.name, job.repartition_topic)
        return (
            members is not None and len(members) == 2 and all(members.values()) and bool(set(members) - old)
        )

    def args(who: str) -> tuple[str, ...]:
        return ("--input-keyed", "false", "--idle-timeout", "3s", "--data-dir", str(tmp_path / who))

    def churn(worker: WorkerProcess, who: str, other: WorkerProcess) -> WorkerProcess:
        """Stop `worker`, start it again; return once it works in the group and the group progressed."""
        old = set(group_members(kafka_admin, job.name, job.repartition_topic) or ())
        note(job, f"stopping worker {who}: {feeder.sent}/{n} fed, {detected()} detected")
        code = worker.stop()
        assert code == 0, f"worker {who} exited {code} after SIGTERM mid-stream"
        again = start_worker(job, env, *args(who))
        alive = all_alive(again, other)
        wait_until(lambda: working(old), job, STARTUP_S, alive, f"worker {who} back in the group")
        target = min(detected() + n // 10, hold_at)
        wait_until(
            lambda: detected() >= target, job, STEP_S, alive, f"{target} detected after {who}'s return"
        )
        return again

    try:
        a = start_worker(job, env, *args("a"))
        b = start_worker(job, env, *args("b"))
        wait_until(lambda: working(set()), job, STARTUP_S, all_alive(a, b), "two workers in the group")
        feeder.start()
        wait_until(lambda: detected() >= n // 10, job, STEP_S, all_alive(a, b), "10% detected")
        a = churn(a, "a", b)
        b = churn(b, "b", a)
        note(job, f"churn over: {feeder.sent}/{n} fed, {detected()} detected")
        feeder.release()
        try:
            wait_for_replay(alerts, expected, all_alive(a, b), STEP_S, "alerts == replay after the churn")
        except AssertionError as exc:  # say whether events were dead-lettered or went missing
            dead.poll(2)
            raise AssertionError(f"{exc}\n{describe_dead(values_of(dead.records))}") from None
        feeder.join(job.budget(30))
        assert feeder.sent == n and not feeder.errors, f"feeder: {feeder.sent}/{n} sent, {feeder.errors[:3]}"
        dead.poll(1)
        no_dead_letters(dead)
    finally:
        feeder.stop()
        job.close()
        delete_redis_keys(redis_url, job.name)


def test_healthz_turns_red_while_the_broker_is_frozen_with_input_waiting(
    private_job: Job, kafka_private: PrivateKafka, tmp_path: Path
) -> None:
    """A backlog waits on the broker when it freezes: the worker's fetches stop making progress while its
    lag is non-zero, so /healthz answers 503 once --stall-timeout passes, and 200 again after the thaw."""
    import urllib.error
    import urllib.request

    job = private_job
    port = free_ports(1)[0]

    def healthz() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    records = recent_workload(60_000, seed=43)
    env = job.env(input_keyed="true", partitions=str(PARTITIONS))
    job.cli("topics", "create", env=env)
    produce(job.brokers, job.input_topic, keyed(records))
    args = (
        "--data-dir", str(tmp_path / "data"), "--web-port", str(port), "--web-host", "127.0.0.1",
        "--stall-timeout", "4s", "--batch-size", "200", "--checkpoint-interval", "200ms",
    )  # fmt: skip
    with job.worker(*args, env=env) as worker:
        wait_until(lambda: healthz() == 200, job, STEP_S, worker.check_alive, "/healthz 200 at start")
        reader = job.reader(job.alert_topic)
        reader.poll_until(lambda got: len(got) >= 1, STARTUP_S, worker.check_alive, "first alerts")
        reader.close()
        kafka_private.freeze()  # with most of the backlog still waiting
        frozen_at = time.monotonic()
        try:
            wait_until(lambda: healthz() == 503, job, 40, worker.check_alive, "/healthz 503 while frozen")
            note(job, f"/healthz red {time.monotonic() - frozen_at:.1f}s into the freeze")
        finally:
            kafka_private.thaw()
        wait_until(lambda: healthz() == 200, job, 60, worker.check_alive, "/healthz 200 after the thaw")
