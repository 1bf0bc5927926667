"""Helpers for the worker integration tests: the job's names and environment, CLI runs, the worker process,
topic readers and the views of alerts the tests compare.

Everything here is bounded in time: CLI runs have timeouts, readers poll against deadlines, and a worker is
stopped with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from streams.core.alerts import RULE_COLUMNS

SCHEMAS = Path(__file__).resolve().parents[2] / "streams" / "schemas"
# What a stream alert shares with `replay` (core.batch.detect): the rule's projection and the exact extras.
COMPARED = (*RULE_COLUMNS, "DistinctPortCount", "FirstSeen", "LastSeen")
BIN_MS = 600_000
CLI_TIMEOUT_S = 60.0
TEST_BUDGET_S = 110.0  # every wait of one test fits in this; stopping the worker comes on top
STOP_GRACE_S = 30.0
LOG_TAIL_CHARS = 12_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """Epoch ms as the ISO-8601 text W3CIISLog carries."""
    from streams.core.timefmt import format_iso_ms

    return format_iso_ms(ms)


def validator(schema_file: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(records: Iterable[dict[str, Any]], schema_file: str) -> list[str]:
    """Every schema violation of `records` (empty when all validate)."""
    v = validator(schema_file)
    return [
        f"{r.get('AlertId', r.get('SourceOffset'))}: {e.message}" for r in records for e in v.iter_errors(r)
    ]


# ---------------------------------------------------------------------------------------------- the job


@dataclass
class Job:
    """One test's stream job: unique app id and topic names, its environment, logs and worker processes."""

    name: str
    brokers: str
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    readers: list[TopicReader] = field(default_factory=list)
    deadline: float = field(default_factory=lambda: time.monotonic() + TEST_BUDGET_S)

    def budget(self, seconds: float) -> float:
        """`seconds`, cut to what is left of the test's budget; fails once the budget is spent."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the test's budget of {TEST_BUDGET_S:.0f}s is spent")
        return min(seconds, left)

    @property
    def input_topic(self) -> str:
        return f"{self.name}-in"

    @property
    def alert_topic(self) -> str:
        return f"{self.name}-alerts"

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}-dlq"

    @property
    def repartition_topic(self) -> str:
        return f"{self.name}-w3ciislog-by-key"

    @property
    def changelog_topic(self) -> str:
        return f"{self.name}-windows-changelog"

    @property
    def log(self) -> Path:
        return self.workdir / "job.log"

    def env(self, **settings: str) -> dict[str, str]:
        """The inherited environment without any PORTSCAN_* setting of the caller, plus this job's names.

        `settings`: more settings by field name, e.g. input_keyed="true" -> PORTSCAN_INPUT_KEYED=true.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTSCAN_")}
        env.update(
            {
                "PORTSCAN_BROKERS": self.brokers,
                "PORTSCAN_APP_ID": self.name,
                "PORTSCAN_INPUT_TOPIC": self.input_topic,
                "PORTSCAN_ALERT_TOPIC": self.alert_topic,
                "PORTSCAN_DLQ_TOPIC": self.dlq_topic,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({"PORTSCAN_" + k.upper(): v for k, v in settings.items()})
        return env

    def cli(self, *args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT_S) -> str:
        """Run `iis-portscan ARGS`; its output goes to the job log and is returned. Fails on non-zero exit."""
        timeout = self.budget(timeout)
        with self.log.open("ab") as fh:
            fh.write(f"\n===== {time.strftime('%X')} iis-portscan {' '.join(args)}\n".encode())
        try:
            done = subprocess.run(
                [sys.executable, "-m", "streams", *args],
                env=env,
                cwd=self.workdir,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"iis-portscan {' '.join(args)} did not finish within {timeout:.0f}s"
            ) from exc
        output = (done.stdout + done.stderr).decode(errors="replace")
        with self.log.open("ab") as fh:
            fh.write(output.encode())
        assert done.returncode == 0, f"iis-portscan {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    @contextmanager
    def worker(self, *args: str, env: dict[str, str]) -> Iterator[WorkerProcess]:
        """`iis-portscan worker ARGS` as a subprocess, stopped (SIGTERM, then SIGKILL) when the block ends."""
        proc = WorkerProcess([sys.executable, "-m", "streams", "worker", *args], env, self.log, self.workdir)
        self.workers.append(proc)
        try:
            yield proc
        finally:
            proc.stop()

    def check_clean_stop(self, proc: WorkerProcess) -> None:
        """The worker exited 0 on SIGTERM and logged no traceback."""
        assert proc.proc.returncode == 0, f"worker exit code {proc.proc.returncode} after SIGTERM"
        assert "Traceback" not in self.log.read_text(errors="replace"), "the worker logged a traceback"

    def reader(self, topic: str) -> TopicReader:
        """A reader of `topic` from the beginning, in a consumer group of its own; closed by `close`.

        Its waits are cut to the test's budget.
        """
        reader = TopicReader(self.brokers, topic, f"{self.name}-reader-{uuid.uuid4().hex[:6]}", self.budget)
        self.readers.append(reader)
        return reader

    def groups(self) -> list[str]:
        return [r.group for r in self.readers]

    def close(self) -> None:
        """Stop every worker and close every reader (idempotent)."""
        for proc in self.workers:
            proc.stop()
        for reader in self.readers:
            reader.close()

    def log_tail(self) -> str:
        if not self.log.exists():
            return f"(no log at {self.log})"
        text = self.log.read_text(errors="replace")
        return text if len(text) <= LOG_TAIL_CHARS else "...\n" + text[-LOG_TAIL_CHARS:]


def own_topics(admin: AdminClient, prefix: str) -> list[str]:
    """Topics whose name starts with `prefix` (the job's own, faust's internal ones included)."""
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))


class WorkerProcess:
    """A running `iis-portscan worker`, its stdout and stderr appended to the job log."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        with log.open("ab") as fh:
            fh.write(f"\n===== {time.strftime('%X')} start {' '.join(argv[1:])}\n".encode())
            self.proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"the worker exited with code {code} while the test waited (see its log)")

    def stop(self) -> int | None:
        """SIGTERM, wait up to STOP_GRACE_S, then SIGKILL; the exit code (None if it would not die)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with self.log.open("ab") as fh:
                    fh.write(f"\n===== no exit {STOP_GRACE_S:.0f}s after SIGTERM: SIGKILL\n".encode())
                self.proc.kill()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    return None
        return self.proc.returncode


# --------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        assert self.value is not None, f"tombstone at partition {self.partition} offset {self.offset}"
        return orjson.loads(self.value)


class TopicReader:
    """Reads one topic from the earliest offset into `records`, incrementally, with deadlines."""

    def __init__(
        self, brokers: str, topic: str, group: str, budget: Callable[[float], float] = lambda s: s
    ) -> None:
        self.topic = topic
        self.budget = budget
        self.group = group
        self.records: list[Record] = []
        self._closed = False
        self.consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "socket.connection.setup.timeout.ms": 5000,
            }
        )
        self.consumer.subscribe([topic])

    def poll(self, seconds: float) -> int:
        """Read for about `seconds`; return how many records arrived."""
        seconds = self.budget(seconds)
        before = len(self.records)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = self.consumer.poll(min(0.25, left))
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, f"reading {self.topic}: {error}"
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            self.records.append(Record(partition, offset, msg.key(), msg.value()))
        return len(self.records) - before

    def poll_until(
        self,
        done: Callable[[list[Record]], bool],
        timeout: float,
        alive: Callable[[], None] | None = None,
        what: str = "",
    ) -> list[Record]:
        """Read until `done(records)` holds; fail after `timeout` s, or as soon as `alive()` raises."""
        timeout = self.budget(timeout)
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if alive is not None:
                alive()
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what or self.topic}: condition not met within {timeout:.0f}s "
                    f"({len(self.records)} records read)"
                )
            self.poll(0.5)
        return self.records

    def values(self) -> list[Any]:
        return [r.json() for r in self.records]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.consumer.close()


# ---------------------------------------------------------------------------------------------- alerts


def latest(alerts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The current answer: the highest Revision per AlertId."""
    out: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        cur = out.get(alert["AlertId"])
        if cur is None or alert["Revision"] > cur["Revision"]:
            out[alert["AlertId"]] = alert
    return out


def view(alerts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """AlertId -> the compared columns (no Revision, no Phase)."""
    return {a["AlertId"]: {k: a[k] for k in COMPARED} for a in alerts}


def view_diff(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]], limit: int = 5) -> str:
    """A short human-readable difference between two views."""
    lines = [f"got {len(got)} alerts, expected {len(want)}"]
    for aid in sorted(set(want) - set(got))[:limit]:
        w = want[aid]
        lines.append(f"missing {aid} {w['TimeGenerated']} {w['cIP']} ports={w['portCount']}")
    for aid in sorted(set(got) - set(want))[:limit]:
        g = got[aid]
        lines.append(f"unexpected {aid} {g['TimeGenerated']} {g['cIP']} ports={g['portCount']}")
    for aid in sorted(set(got) & set(want)):
        if got[aid] != want[aid] and len(lines) < 3 * limit:
            cols = [k for k in COMPARED if got[aid][k] != want[aid][k]]
            lines.append(
                f"differs {aid}: "
                + ", ".join(f"{k}: got {str(got[aid][k])[:60]} want {str(want[aid][k])[:60]}" for k in cols)
            )
    return "\n".join(lines)


def revisions_by_id(alerts: Iterable[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """AlertId -> [(Revision, Phase)] in the order read (one AlertId is one key, so one partition)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for alert in alerts:
        out.setdefault(alert["AlertId"], []).append((alert["Revision"], alert["Phase"]))
    return out


# ---------------------------------------------------------------------------------------------- input


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


def payload_text(raw: bytes) -> tuple[str, str]:
    """(Payload, PayloadEncoding) as a dead letter carries the message value `raw`."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


Headers = list[tuple[str, bytes]] | None


def produce(
    brokers: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]] | Iterable[tuple[bytes | None, bytes, Headers]],
    timeout: float = 60.0,
) -> int:
    """Send (key, value) pairs, or (key, value, headers), with an idempotent producer and wait for every
    acknowledgement."""
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _msg: Any) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 10,
            "message.timeout.ms": int(timeout * 1000),
            "partitioner": "murmur2_random",
        }
    )
    sent = 0
    for key, value, *rest in messages:
        headers = rest[0] if rest else None
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors: {errors[:3]}"
    return sent
