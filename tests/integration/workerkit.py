"""Helpers for the worker integration tests: the job's names and environment, CLI runs, the worker process,
topic readers and the views of alerts the tests compare.

Everything here is bounded in time: CLI runs have timeouts, readers poll against deadlines, and a worker is
stopped with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from streams.core.alerts import RULE_COLUMNS
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.io.sample import Workload, generate

from .private_services import free_ports

SCHEMAS = Path(__file__).resolve().parents[2] / "streams" / "schemas"
# What a stream alert shares with `replay` (core.offline.offline_alerts): the rule's projection and the
# exact extras.
COMPARED = (*RULE_COLUMNS, "DistinctPortCount", "FirstSeen", "LastSeen")
BIN_MS = 600_000
CLI_TIMEOUT_S = 60.0
TEST_BUDGET_S = 110.0  # every wait of one test fits in this; stopping the worker comes on top
STOP_GRACE_S = 30.0
LOG_TAIL_CHARS = 12_000
STARTUP_AND_WORK_S = 90.0  # worker start-up (topics, rebalance, recovery) plus processing, on a loaded host
STEP_S = 60.0  # one step of a scripted scenario (includes start-up for the first step)
SETTLE_S = 2.0  # extra reading after a condition holds, to catch records that should not be there
COMPUTER, SIP = "WEB01.contoso.local", "10.0.0.11"
CLOSED = ("final", "late")


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

    def extend_budget(self, seconds: float) -> None:
        """A longer test (a large workload, several crashes): its waits may take `seconds` in all."""
        self.deadline = time.monotonic() + seconds

    def budget(self, seconds: float) -> float:
        """`seconds`, cut to what is left of the test's budget; fails once the budget is spent."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the test's time budget is spent")
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

    def start_worker(self, *args: str, env: dict[str, str], web: bool = False) -> WorkerProcess:
        """`iis-portscan worker ARGS` as a subprocess; `close` stops it at the end of the test. With
        `web`, it serves /metrics on a free port (`WorkerProcess.metric`)."""
        port = free_port() if web else None
        if port is not None:
            env = {**env, "PORTSCAN_WEB_PORT": str(port)}
        argv = [sys.executable, "-m", "streams", "worker", *args]
        proc = WorkerProcess(argv, env, self.log, self.workdir, port)
        self.workers.append(proc)
        return proc

    @contextmanager
    def worker(self, *args: str, env: dict[str, str]) -> Iterator[WorkerProcess]:
        """`iis-portscan worker ARGS` as a subprocess, stopped (SIGTERM, then SIGKILL) when the block ends."""
        proc = self.start_worker(*args, env=env)
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

    def offsets(self, topic: str) -> list[tuple[int, int]]:
        """(offset the job's consumer group committed, end offset) of each partition of `topic`; the
        committed offset is negative where the group has committed none."""
        probe = Consumer(
            {
                "bootstrap.servers": self.brokers,
                "group.id": self.name,  # the worker's group (its app id); asked, never joined
                "enable.auto.commit": False,
            }
        )
        try:
            meta = probe.list_topics(topic, timeout=10).topics[topic]
            parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            return [
                (tp.offset, probe.get_watermark_offsets(tp, timeout=10)[1])
                for tp in probe.committed(parts, timeout=10)
            ]
        finally:
            probe.close()

    def progress(self, topic: str) -> tuple[int, int]:
        """`offsets` summed over the partitions: how far the workers got, as a crash would leave it."""
        pairs = self.offsets(topic)
        return sum(max(c, 0) for c, _ in pairs), sum(end for _, end in pairs)

    def wait_progress(
        self, topic: str, at_least: int, alive: Callable[[], None], timeout: float = STARTUP_AND_WORK_S
    ) -> int:
        """Poll until the job's group has committed at least `at_least` offsets of `topic`; the count."""
        read = lambda: self.progress(topic)[0]  # noqa: E731
        return int(wait_at_least(read, at_least, alive, self.budget(timeout), f"{topic} committed", 0.1))

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


def wait_at_least(
    read: Callable[[], float],
    at_least: float,
    alive: Callable[[], None],
    timeout: float,
    what: str,
    every: float,
) -> float:
    """Poll `read()` every `every` s until it reaches `at_least` (failing at once if `alive()` raises);
    the value read."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        value = read()
        if value >= at_least:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: {value}, not {at_least}, within {timeout:.0f}s")
        time.sleep(every)


def free_port() -> int:
    """A port for a worker's endpoints: see private_services.free_ports."""
    return free_ports(1)[0]


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on 127.0.0.1; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric_samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in Prometheus text (labels as written, '' for none)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


def own_topics(admin: AdminClient, prefix: str) -> list[str]:
    """Topics whose name starts with `prefix` (the job's own, faust's internal ones included)."""
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))


class WorkerProcess:
    """A running `iis-portscan worker`, its stdout and stderr appended to the job log."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], log: Path, cwd: Path, web_port: int | None = None
    ) -> None:
        self.log = log
        self.web_port = web_port
        with log.open("ab") as fh:
            fh.write(f"\n===== {time.strftime('%X')} start {' '.join(argv[1:])}\n".encode())
            self.proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"the worker exited with code {code} while the test waited (see its log)")

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the worker's /metrics page (0 while it does not answer)."""
        assert self.web_port is not None, "started without web=True"
        status, text = http_get(self.web_port, "/metrics")
        return sum(metric_samples(text, name).values()) if status == 200 else 0.0

    def wait_metric(self, name: str, at_least: float, timeout: float) -> float:
        """Poll /metrics until `name` reaches `at_least` (the worker alive); its value."""
        return wait_at_least(lambda: self.metric(name), at_least, self.check_alive, timeout, name, 0.02)

    def kill(self) -> None:
        """SIGKILL: a crash (no checkpoint, no commit, no leaving the group)."""
        if self.proc.poll() is None:
            with self.log.open("ab") as fh:
                fh.write(f"\n===== {time.strftime('%X')} SIGKILL\n".encode())
            self.proc.kill()
        self.proc.wait(30)

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
    """Reads one topic from the earliest offset into `records`, incrementally, with deadlines.

    It assigns itself every partition of the topic (once the topic exists) rather than join a consumer
    group: no group coordinator between the test and the records, so a frozen or restarted broker, or
    a loaded machine, delays the reading but never leaves a reader without partitions."""

    def __init__(
        self, brokers: str, topic: str, group: str, budget: Callable[[float], float] = lambda s: s
    ) -> None:
        self.topic = topic
        self.budget = budget
        self.group = group  # required by the client; never joined, nothing committed
        self.records: list[Record] = []
        self._closed = False
        self._assigned = False
        self.consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": group,
                "enable.auto.commit": False,
                "socket.connection.setup.timeout.ms": 5000,
            }
        )

    def _assign(self) -> bool:
        """Assign every partition from the beginning, once the topic exists; whether it is assigned."""
        if not self._assigned:
            try:
                meta = self.consumer.list_topics(self.topic, timeout=2).topics.get(self.topic)
            except KafkaException:
                return False  # the broker does not answer (yet): try again on the next poll
            if meta is None or meta.error is not None or not meta.partitions:
                return False  # not created yet
            parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
            self.consumer.assign(parts)
            self._assigned = True
        return True

    def poll(self, seconds: float) -> int:
        """Read for about `seconds`; return how many records arrived."""
        seconds = self.budget(seconds)
        before = len(self.records)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self._assign():
                time.sleep(min(0.25, max(left, 0)))
                continue
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
    partition: int | None = None,
) -> int:
    """Send (key, value) pairs, or (key, value, headers), with an idempotent producer and wait for every
    acknowledgement; all to `partition` when given, else by key (murmur2, random when unkeyed)."""
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
                if partition is None:
                    producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                else:
                    producer.produce(
                        topic,
                        value=value,
                        key=key,
                        headers=headers,
                        partition=partition,
                        on_delivery=delivered,
                    )
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors: {errors[:3]}"
    return sent


# ---------------------------------------------------------------------------------------------- scenarios


def recent_workload(events: int, seed: int, **shape: Any) -> list[dict[str, Any]]:
    """Generated traffic dated 4 h to 1 h ago: within the default 24 h retention even after an idle
    watermark jump (now - grace), and never ahead of the wall clock."""
    start = now_ms() // BIN_MS * BIN_MS - 4 * 3_600_000
    shape.setdefault("benign_clients", 2_000)
    shape.setdefault("scan_share", 0.1)
    return list(generate(Workload(events=events, seed=seed, start_ms=start, span_ms=3 * 3_600_000, **shape)))


def expected_view(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What `replay` answers over the valid records."""
    events = [e for e in map(event_from_record, records) if isinstance(e, IISEvent)]
    return view(offline_alerts(events))


def values_of(records: list[Record]) -> list[dict[str, Any]]:
    """The JSON values of records read from a topic (alerts or dead letters)."""
    return [r.json() for r in records]


def event(t_ms: int, cip: str, port: int, computer: str = COMPUTER, sip: str = SIP) -> dict[str, Any]:
    return {
        "TimeGenerated": iso(t_ms),
        "Computer": computer,
        "cIP": cip,
        "sIP": sip,
        "sPort": port,
        "csMethod": "GET",
        "csUriQuery": "-",
        "csUserName": "-",
        "sSiteName": "W3SVC1",
        "csUserAgent": "masscan/1.3",
        "scStatus": "404",
        "scSubStatus": "0",
        "scWin32Status": "2",
        "Type": "W3CIISLog",
    }


def keyed(records: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    """Messages keyed like `iis-portscan produce` keys them: cIP|Computer|sIP."""
    return [(f"{r['cIP']}|{r['Computer']}|{r['sIP']}".encode(), orjson.dumps(r)) for r in records]


def send(job: Job, records: list[dict[str, Any]]) -> None:
    """Produce W3CIISLog records to the job's input, keyed, and wait for the broker's acknowledgement."""
    produce(job.brokers, job.input_topic, keyed(records))


def describe_dead(letters: list[dict[str, Any]]) -> str:
    """How many dead letters, by reason, and the first one's detail: for failure messages."""
    if not letters:
        return "no dead letters"
    reasons = Counter(d.get("Reason") for d in letters)
    return f"{len(letters)} dead letters {dict(reasons)}; first: {str(letters[0].get('Detail'))[:160]}"


def no_dead_letters(dlq: TopicReader) -> None:
    """Fail at once (with the reasons) when a dead letter arrived where none may."""
    if dlq.records:
        raise AssertionError(f"unexpected dead letters: {describe_dead(values_of(dlq.records))}")


def phases(alerts: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(a["Phase"] for a in alerts))


def await_answer(
    alerts: TopicReader,
    expected: dict[str, dict[str, Any]],
    alive: Callable[[], None],
    what: str,
    closed: bool = True,
    dlq: TopicReader | None = None,
    timeout: float = STARTUP_AND_WORK_S,
    context: Callable[[], str] = lambda: "",
) -> None:
    """Read alerts until the latest revision per AlertId equals `expected` on the compared columns (and,
    with `closed`, every latest alert is final or late). With `dlq`, any dead letter fails at once.
    `context`: more to show when it fails (a broker's log, say)."""

    def answered(got: list[Record]) -> bool:
        if dlq is not None:
            dlq.poll(0.05)
            no_dead_letters(dlq)
        current = latest(values_of(got))
        if view(current.values()) != expected:
            return False
        return not closed or all(a["Phase"] in CLOSED for a in current.values())

    try:
        alerts.poll_until(answered, timeout, alive, what)
    except AssertionError as exc:
        current = latest(values_of(alerts.records))
        raise AssertionError(
            f"{exc}\n{view_diff(view(current.values()), expected)}\nlatest phases: {phases(current.values())}"
            f"{context()}"
        ) from None


def wait_for_log(job: Job, worker: WorkerProcess, pattern: str, count: int, timeout: float) -> None:
    """Poll the job log until `pattern` has matched `count` distinct texts (e.g. one line per partition)."""
    timeout = job.budget(timeout)
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while True:
        check_alive_and_clean(job, worker)
        text = job.log.read_text(errors="replace") if job.log.exists() else ""
        if len(set(regex.findall(text))) >= count:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"the worker log did not show {count} x {pattern!r} within {timeout:.0f}s")
        time.sleep(0.2)


def check_alive_and_clean(job: Job, worker: WorkerProcess) -> None:
    """The worker we started is still running (it never exited or restarted) and logged no traceback.

    Also the `alive` check of every wait here: a worker whose consumer crashed may stay up doing nothing,
    so the wait fails at once with the traceback rather than at its deadline."""
    assert job.workers == [worker], "another worker process was started"
    worker.check_alive()
    text = job.log.read_text(errors="replace")
    if "Traceback" in text:
        trace = text[text.index("Traceback") :]
        # the exception line: the first unindented line after the header
        error = next((ln for ln in trace.splitlines()[1:] if ln and not ln[0].isspace()), "?")
        raise AssertionError(f"the worker logged a traceback: {error[:300]}\n{trace[:3000]}")


def watchdog(job: Job, worker: WorkerProcess) -> Callable[[], None]:
    """`alive` for poll_until: see check_alive_and_clean."""
    return lambda: check_alive_and_clean(job, worker)
