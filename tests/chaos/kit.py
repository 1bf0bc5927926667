"""Runs a chaos scenario (tests/chaos/scenario.py) against real services and checks its end state.

The feed goes chunk by chunk, each chunk produced in the background at a steady pace; the scenario's
moves strike once the group has committed the share of the chunk they name (committed offsets read from
the broker: observed progress, never a sleep alone). A pause between chunks waits until the group has
committed everything fed so far, then lets more than the idle timeout pass. At the end: at least one worker
runs, the group has committed every input and repartitioned record, the idle timeout has passed, and then
the latest revision per AlertId read from the alert topic must equal `replay` over the same events, every
compared column, each of them `final` (or `late`), and every bad record is dead-lettered, once by key, with
replay's reason.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.core.deadletter import dead_letter_key
from tests.integration.private_services import PrivateKafka, PrivateRedis
from tests.integration.workerkit import (
    CLOSED,
    Job,
    Record,
    WorkerProcess,
    http_get,
    latest,
    metric_samples,
    phases,
    values_of,
    view,
    view_diff,
)

from .scenario import COMPUTER, Message, Scenario, expected, groups_of, messages, murmur2_partition

IDLE_TIMEOUT_S = 3.0
GRACE_S = 5.0
FEED_PER_S = 2_500  # pace of a chunk's feed
STEP_S = 120.0  # the longest wait for one step (a trigger, a worker to be ready, the final commit)
ANSWER_S = 90.0  # after everything is committed: the alerts must reach replay's answer within this
SETTLE_S = 2.0  # reading on after the answer matched, to catch a revision that should not come
BUDGET_S = 600.0  # one scenario, every wait included


def note(job: Job, text: str) -> None:
    with job.log.open("ab") as fh:
        fh.write(f"\n===== {time.strftime('%X')} chaos: {text}\n".encode())


@dataclass
class Feed:
    """Produces one chunk in the background at FEED_PER_S, each message to its partition; records where
    each landed (partition, offset) for the dead-letter check."""

    brokers: str
    topic: str
    msgs: list[Message]
    landed: dict[int, tuple[int, int]] = field(default_factory=dict)  # index in msgs -> (partition, offset)
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self, indices: list[int]) -> None:
        self.thread = threading.Thread(target=self._run, args=(indices,), name="chaos-feed", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the feed did not finish within {timeout:.0f}s"
        assert not self.errors, f"feed errors: {self.errors[:3]}"

    def _run(self, indices: list[int]) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.brokers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 300_000,
                "partitioner": "murmur2_random",  # as `iis-portscan produce` and the router key
            }
        )

        def delivered(i: int) -> Callable[[KafkaError | None, Any], None]:
            def done(error: KafkaError | None, msg: Any) -> None:
                if error is not None:
                    self.errors.append(str(error))
                elif msg.partition() != self.msgs[i].partition:
                    self.errors.append(
                        f"key {msg.key()!r} went to {msg.partition()}, not {self.msgs[i].partition}"
                    )
                else:
                    self.landed[i] = (msg.partition(), msg.offset())

            return done

        try:
            per_slice = max(1, FEED_PER_S // 10)
            next_at = time.monotonic()
            for n, i in enumerate(indices):
                if n % per_slice == 0:
                    next_at += 0.1
                    time.sleep(max(0.0, next_at - time.monotonic()))
                m = self.msgs[i]
                while True:
                    try:
                        if m.key is None:  # unkeyed: to the partition the scenario chose
                            producer.produce(
                                self.topic, value=m.value, partition=m.partition, on_delivery=delivered(i)
                            )
                        else:  # keyed: the partitioner's choice (which the scenario computed)
                            producer.produce(self.topic, value=m.value, key=m.key, on_delivery=delivered(i))
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            left = producer.flush(300)
            if left:
                self.errors.append(f"{left} messages not delivered")
        except Exception as exc:  # reported by join
            self.errors.append(f"{type(exc).__name__}: {exc}")


class Offsets:
    """The group's committed offsets and the end offsets of a topic, asked without joining the group;
    None while the broker does not answer (frozen, restarting)."""

    def __init__(self, brokers: str, group: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": group,
                "enable.auto.commit": False,
                "socket.connection.setup.timeout.ms": 3000,
            }
        )

    def pairs(self, topic: str) -> list[tuple[int, int]] | None:
        """(committed, end) per partition of `topic` (committed < 0 where none)."""
        try:
            meta = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return None
            parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            return [
                (tp.offset, self.consumer.get_watermark_offsets(tp, timeout=5)[1])
                for tp in self.consumer.committed(parts, timeout=5)
            ]
        except KafkaException:
            return None

    def committed(self, topic: str) -> int | None:
        pairs = self.pairs(topic)
        return None if pairs is None else sum(max(c, 0) for c, _ in pairs)

    def caught_up(self, topic: str) -> bool:
        """Every partition committed up to its end (a partition with no record needs no commit)."""
        pairs = self.pairs(topic)
        return pairs is not None and all(end == 0 or c == end for c, end in pairs)

    def close(self) -> None:
        self.consumer.close()


class Run:
    """One scenario on one job: its services, its hosts (worker processes with their data dirs)."""

    def __init__(
        self,
        scenario: Scenario,
        job: Job,
        tmp: Path,
        broker: PrivateKafka | None,
        redis: PrivateRedis | None,
    ) -> None:
        self.s = scenario
        self.job = job
        self.tmp = tmp
        self.broker = broker
        self.redis = redis
        self.running: list[tuple[str, WorkerProcess]] = []  # (host name, process)
        self.hosts = 0
        self.events: list[str] = []  # what the run did, for the failure message
        self.now_ms = time.time_ns() // 1_000_000
        self.msgs = messages(scenario, self.now_ms)
        self.expected = expected(self.msgs)
        self.offsets = Offsets(job.brokers, job.name)
        self.feed = Feed(job.brokers, job.input_topic, self.msgs)
        store = {"rocksdb": "rocksdb://", "rocksdb-standby": "rocksdb://", "redis": ""}[scenario.store]
        if scenario.store == "redis":
            assert redis is not None
            store = redis.url()
        self.env = job.env(
            input_keyed="true" if scenario.keyed else "false",
            partitions=str(scenario.partitions),
            store=store,
            standby_replicas="1" if scenario.store == "rocksdb-standby" else "0",
            idle_timeout=f"{IDLE_TIMEOUT_S:.0f}s",
            grace=f"{GRACE_S:.0f}s",
            session_timeout="6s",
            checkpoint_interval="250ms",
            batch_size="1000",
            drain_timeout="15s",
            computer=COMPUTER,
        )

    # ---------------------------------------------------------------------------------------- hosts

    def say(self, text: str) -> None:
        self.events.append(f"{time.strftime('%X')} {text}")
        note(self.job, text)

    def start_host(self, name: str | None = None) -> str:
        """A worker on host `name` (its own data dir), a new host when None."""
        if name is None:
            name = f"host{self.hosts}"
            self.hosts += 1
        proc = self.job.start_worker("--data-dir", str(self.tmp / name), env=self.env, web=True)
        self.running.append((name, proc))
        self.say(f"start worker on {name} (pid {proc.proc.pid})")
        return name

    def alive(self) -> None:
        """Every worker the schedule keeps running is running (one that exits by itself is a failure)."""
        for name, proc in self.running:
            code = proc.proc.poll()
            if code is not None:
                raise AssertionError(f"the worker on {name} exited with code {code} by itself")

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = STEP_S) -> None:
        deadline = time.monotonic() + self.job.budget(timeout)
        while not condition():
            self.alive()
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.2)

    def ready(self, proc: WorkerProcess) -> bool:
        assert proc.web_port is not None
        status, text = http_get(proc.web_port, "/metrics")
        return status == 200 and sum(metric_samples(text, "iis_portscan_ready").values()) >= 1

    def committed_input(self) -> int:
        return self.offsets.committed(self.job.input_topic) or 0

    # ---------------------------------------------------------------------------------------- moves

    def strike(self, kind: str, worker: int, restart: bool, seconds: float) -> None:
        if kind in ("sigkill", "sigterm"):
            name, proc = self.running.pop(worker % len(self.running))
            if kind == "sigkill":
                proc.kill()
                self.say(f"SIGKILL worker on {name}")
            else:
                code = proc.stop()
                self.say(f"SIGTERM worker on {name}: exit {code}")
            if restart or not self.running:
                self.start_host(name)
        elif kind == "join":
            name = self.start_host()
            self.wait(lambda: self.ready(self.running[-1][1]), f"worker on {name} ready")
        elif kind == "rebalance":
            name = self.start_host()
            proc = self.running[-1][1]
            self.wait(lambda: self.ready(proc), f"worker on {name} ready (in the group)")
            self.running.pop()
            code = proc.stop()
            self.say(f"SIGTERM transient worker on {name}: exit {code}")
        elif kind == "broker-freeze":
            assert self.broker is not None
            self.broker.freeze()
            self.say(f"broker frozen (SIGSTOP) for {seconds:.0f}s")
            self.hold(seconds)
            self.broker.thaw()
            self.say("broker thawed (SIGCONT)")
        elif kind == "broker-restart":
            assert self.broker is not None
            self.say(f"broker stop: {self.broker.stop()}")
            self.hold(seconds)
            self.broker.start()
            self.say("broker started again")
        elif kind == "redis-restart":
            assert self.redis is not None
            self.redis.kill()
            self.say(f"Redis SIGKILL, down for {seconds:.0f}s")
            self.hold(seconds)
            self.redis.start()
            self.say("Redis started again (AOF)")
        else:
            raise ValueError(kind)

    def hold(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.alive()
            time.sleep(min(0.3, left))

    # ---------------------------------------------------------------------------------------- the run

    def run(self) -> None:
        s, job = self.s, self.job
        job.extend_budget(BUDGET_S)
        note(job, s.describe())
        job.cli("topics", "create", env=self.env)
        for _ in range(s.hosts):
            self.start_host()
        chunks = [[i for i, m in enumerate(self.msgs) if m.chunk == c] for c in range(s.chunks)]
        fed = 0
        for c, indices in enumerate(chunks):
            self.feed.start(indices)
            self.say(f"feeding chunk {c}: {len(indices)} messages")
            for move in (m for m in s.moves if m.chunk == c):
                target = fed + int(move.at * len(indices))
                self.wait(
                    lambda t=target: self.committed_input() >= t,  # type: ignore[misc]
                    f"{target} input records committed before {move.describe()}",
                )
                self.say(f"{move.describe()}: {self.committed_input()} input committed")
                self.strike(move.kind, move.worker, move.restart, move.seconds)
            self.feed.join(self.job.budget(STEP_S))
            fed += len(indices)
            if c in s.pauses:
                self.wait(lambda f=fed: self.committed_input() >= f, f"all {fed} fed committed")  # type: ignore[misc]
                self.say(f"pause: all {fed} committed; idle for {IDLE_TIMEOUT_S + 2:.0f}s")
                self.hold(IDLE_TIMEOUT_S + 2)
        assert len(self.feed.landed) == len(self.msgs)
        if not self.running:
            self.start_host("host0")
        self.finish()

    def finish(self) -> None:
        job = self.job
        topics = [job.input_topic] + ([] if self.s.keyed else [job.repartition_topic])
        try:
            self.wait(lambda: all(self.offsets.caught_up(t) for t in topics), "every input record committed")
        except AssertionError as exc:
            state = "; ".join(f"{t}: (committed, end) {self.offsets.pairs(t)}" for t in topics)
            raise AssertionError(f"{exc}\n{state}\nwhat the run did:\n" + "\n".join(self.events)) from None
        self.say(f"all committed ({', '.join(topics)}); idle timeout passes")
        self.hold(IDLE_TIMEOUT_S + 1)
        alerts, dlq = job.reader(job.alert_topic), job.reader(job.dlq_topic)

        def answered(records: list[Any]) -> bool:
            current = latest(values_of(records))
            return view(current.values()) == self.expected and all(
                a["Phase"] in CLOSED for a in current.values()
            )

        try:
            alerts.poll_until(answered, ANSWER_S, self.alive, "alerts == replay, all final")
            alerts.poll(SETTLE_S)
            assert answered(alerts.records), "a revision after the answer changed it"
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.analysis(values_of(alerts.records))}") from None
        dlq.poll(SETTLE_S)
        self.check_dead_letters(dlq.records)

    # ---------------------------------------------------------------------------------------- checks

    def check_dead_letters(self, letters: list[Record]) -> None:
        """Every bad (and future) message dead-lettered with replay's reason, under the key of its source
        coordinates (so a repeat after a crash replaces its twin: once by key); nothing else."""
        want: dict[bytes, str] = {}
        for i, m in enumerate(self.msgs):
            if m.reason is not None:
                partition, offset = self.feed.landed[i]
                want[dead_letter_key(self.job.input_topic, partition, offset, None)] = m.reason
        got: dict[bytes, set[str]] = {}
        for r in letters:
            d = r.json()
            key = dead_letter_key(d["SourceTopic"], d["SourcePartition"], d["SourceOffset"], d["RecordIndex"])
            assert r.key == key, f"a dead letter of {key!r} is keyed {r.key!r}"
            got.setdefault(key, set()).add(d["Reason"])
        missing = {k: v for k, v in want.items() if k not in got}
        extra = {k: v for k, v in got.items() if k not in want}
        wrong = {k: (want[k], got[k]) for k in want if k in got and got[k] != {want[k]}}
        assert not (missing or extra or wrong), (
            f"dead letters: {len(missing)} missing {dict(list(missing.items())[:5])}, "
            f"{len(extra)} unexpected {dict(list(extra.items())[:5])}, {len(wrong)} with another reason "
            f"{dict(list(wrong.items())[:5])}; {len(letters)} read for {len(got)} keys"
        )

    def analysis(self, alerts: list[dict[str, Any]]) -> str:
        """Which windows are wrong, of which by-key partition, in which phase: for the failure message."""
        current = latest(alerts)
        got = view(current.values())
        lines = [view_diff(got, self.expected, limit=10), f"latest phases: {phases(current.values())}"]
        groups = groups_of(self.msgs)
        for aid, want in sorted(self.expected.items(), key=lambda kv: kv[1]["TimeGenerated"]):
            have = current.get(aid)
            ok = have is not None and got[aid] == want and have["Phase"] in CLOSED
            group = (want["cIP"], want["Computer"], want["sIP"])
            key = f"{group[0]}|{group[1]}|{group[2]}".encode()
            lines.append(
                f"{'ok ' if ok else 'BAD'} {want['TimeGenerated']} {group[0]:>15} {group[1]} "
                f"by-key partition {murmur2_partition(key, self.s.partitions)} "
                f"input partitions {dict(groups.get(group, Counter()))}: "
                f"want conns={want['ConnectionsCount']} ports={want['portCount']}; got "
                + (
                    "nothing"
                    if have is None
                    else f"{have['Phase']} rev {have['Revision']} conns={have['ConnectionsCount']} "
                    f"ports={have['portCount']}"
                )
            )
        return "\n".join([*lines, "what the run did:", *self.events])

    def close(self) -> None:
        for _, proc in self.running:
            proc.stop()
        self.offsets.close()
