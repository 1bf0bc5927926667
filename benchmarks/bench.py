"""`make bench`: throughput, early-alert latency and memory of the worker through a real broker,
beside two baselines measured in the same run (a bare consumer, and the naive faust idiom).

Every step checks its own answer against `replay`'s (the core's OfflineRule over the same events),
so a fast wrong answer shows as FAIL. Numbers are printed and written to
benchmarks/results/latest.json; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks import load
from benchmarks.load import Crossing, Expected, Sender, encoded, fill
from streams.core.alerts import SET_COLUMNS, build_alert
from streams.core.offline import OfflineRule
from streams.core.parse import parse_json
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.timefmt import format_iso_ms, parse_iso_ms
from streams.io.sample import Workload, generate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent

KAFKA_CONFIG_FILE = ""  # --kafka-config-file, passed on to our worker processes


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- plumbing


@dataclass
class Ctx:
    """One benchmark run: where the services are, and the names it creates (all under `prefix`)."""

    brokers: str
    redis_url: str
    partitions: int
    prefix: str
    work: Path
    admin: AdminClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = AdminClient({**load.CLIENT, "bootstrap.servers": self.brokers})

    def topic(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        # Records carry their event time as timestamp, which may be months old: no time retention.
        topic = NewTopic(full, self.partitions, 1, config={"retention.ms": "-1"})
        futures = self.admin.create_topics([topic], operation_timeout=30)
        for future in futures.values():
            future.result(timeout=30)
        return full

    def cleanup(self) -> None:
        names = [t for t in self.admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
        if names:
            for future in self.admin.delete_topics(names, operation_timeout=60).values():
                try:
                    future.result(timeout=60)
                except Exception as exc:
                    log(f"could not delete a topic: {exc}")
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"iis-portscan:{self.prefix}*", count=10_000))
            for i in range(0, len(keys), 10_000):
                client.delete(*keys[i : i + 10_000])
        except Exception as exc:
            log(f"could not clean Redis: {exc}")
        shutil.rmtree(self.work, ignore_errors=True)


def check_services(brokers: str, redis_url: str) -> None:
    admin = AdminClient({**load.CLIENT, "bootstrap.servers": brokers, "socket.timeout.ms": 5000})
    try:
        admin.list_topics(timeout=8)
    except Exception as exc:
        raise SystemExit(
            f"bench: no Kafka broker at {brokers} ({exc}); start one with `make services-up`"
        ) from None
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except Exception as exc:
        raise SystemExit(
            f"bench: no Redis at {redis_url} ({exc}); start one with `make services-up`"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AlertFollower:
    """Consumes an alert topic in a thread from the beginning; `on_alert(alert, perf_counter time)` for
    each record (subclasses say what they note)."""

    def __init__(self, brokers: str, topic: str) -> None:
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **load.CLIENT,
                "bootstrap.servers": brokers,
                "group.id": f"{topic}-reader",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def on_alert(self, alert: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                if msg.error() is not None:
                    continue
                self.on_alert(orjson.loads(msg.value()), time.perf_counter())
        self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class AlertReader(AlertFollower):
    """Our alert topic: when each AlertId was first seen, and its early alert."""

    def __init__(self, brokers: str, topic: str) -> None:
        self.first_seen: dict[str, float] = {}
        self.early_seen: dict[str, float] = {}
        self.records = 0
        super().__init__(brokers, topic)

    def on_alert(self, alert: dict[str, Any], now: float) -> None:
        self.records += 1
        self.first_seen.setdefault(alert["AlertId"], now)
        if alert.get("Phase") == "early":
            self.early_seen.setdefault(alert["AlertId"], now)


class Worker:
    """`iis-portscan worker` in a subprocess, observed through its /metrics page and /proc."""

    def __init__(self, ctx: Ctx, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.web_port = free_port()
        self.data_dir = ctx.work / name
        self.log_path = ctx.work / f"{name}.log"
        full_env = {
            **os.environ,
            "PORTSCAN_BROKERS": ctx.brokers,
            "PORTSCAN_KAFKA_CONFIG_FILE": KAFKA_CONFIG_FILE,
            "PORTSCAN_APP_ID": f"{ctx.prefix}-{name}",
            "PORTSCAN_INPUT_KEYED": "true",
            "PORTSCAN_PARTITIONS": str(ctx.partitions),
            "PORTSCAN_DATA_DIR": str(self.data_dir),
            "PORTSCAN_WEB_PORT": str(self.web_port),
            **env,
        }
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(BIN / "iis-portscan"), "worker"], env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            if name:
                out[name] = float(value)
        return out

    def events(self) -> int:
        return int(self.metrics().get("iis_portscan_events_total", 0))

    def dead_letters(self) -> int:
        return int(sum(v for k, v in self.metrics().items() if k.startswith("iis_portscan_dead_letters")))

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def fail(self, why: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return RuntimeError(f"{self.name}: {why}\n" + "\n".join(tail))


def wait_until(
    pred: Any, timeout: float, what: str, worker: Worker | None = None, poll: float = 0.05
) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if pred():
            return time.perf_counter()
        if worker is not None and not worker.alive():
            raise worker.fail(f"exited while waiting for {what}")
        time.sleep(poll)
    raise (worker.fail(f"timed out waiting for {what}") if worker else RuntimeError(f"timeout: {what}"))


def wait_assigned(ctx: Ctx, group: str, worker: Worker, timeout: float = 90) -> None:
    """Until the worker's consumer group is stable with every partition assigned."""

    def stable() -> bool:
        try:
            desc = ctx.admin.describe_consumer_groups([group])[group].result(timeout=5)
        except Exception:
            return False
        assigned = sum(len(m.assignment.topic_partitions) for m in desc.members)
        return str(desc.state).endswith("STABLE") and assigned > 0

    wait_until(stable, timeout, "partition assignment", worker, poll=0.25)


def group_members_with(ctx: Ctx, group: str, topic: str) -> int:
    """How many members of a stable consumer group hold partitions of `topic` (0 while rebalancing)."""
    try:
        desc = ctx.admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:
        return 0
    if not str(desc.state).endswith("STABLE"):
        return 0
    return sum(any(tp.topic == topic for tp in m.assignment.topic_partitions) for m in desc.members)


# ------------------------------------------------------------------------------------------- steps


@dataclass
class Step:
    name: str
    events: int
    seconds: float
    ok: bool
    note: str
    cpu_s: float = 0.0  # CPU seconds of the measured process(es) over `seconds` (0: not measured)

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def step_limit(ctx: Ctx, topic: str, n: int) -> Step:
    """The ceiling: a confluent-kafka consumer that only `orjson.loads` every value."""
    consumer = Consumer(
        {
            **load.CLIENT,
            "bootstrap.servers": ctx.brokers,
            "group.id": f"{ctx.prefix}-limit",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
        }
    )
    consumer.subscribe([topic])
    loads = orjson.loads
    seen = valid = 0
    first = last = 0.0
    deadline = time.perf_counter() + 300
    while seen < n and time.perf_counter() < deadline:
        batch = consumer.consume(10_000, 1.0)
        if not batch:
            continue
        if not first:
            first = time.perf_counter()
        for msg in batch:
            if msg.error() is None:
                valid += type(loads(msg.value())) is dict
                seen += 1
        last = time.perf_counter()
    consumer.close()
    return Step(
        "limit (confluent consume + orjson.loads)", seen, last - first, valid == n, f"{valid}/{n} decoded"
    )


def step_naive(ctx: Ctx, topic: str, expected: Expected) -> Step:
    """The first idiom a faust user writes: per event, read-modify-write a set in a windowed table."""
    data = ctx.work / "naive"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.naive_faust",
        "--brokers",
        ctx.brokers,
        "--topic",
        topic,
        "--app-id",
        f"{ctx.prefix}-naive",
        "--data-dir",
        str(data),
        "--events",
        str(expected.events),
        "--timeout",
        "900",
    ]
    log_path = ctx.work / "naive.log"
    with open(log_path, "wb") as err:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, timeout=1200, check=False)
    try:
        result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = log_path.read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError("naive faust printed no result:\n" + "\n".join(tail)) from None
    if "error" in result:
        raise RuntimeError(f"naive faust: {result['error']}")
    ok = result["events"] == expected.events and result["alerts"] == len(expected.alert_ids)
    note = f"{result['alerts']} windows alerted, replay {len(expected.alert_ids)}"
    return Step("naive faust (per-event windowed set RMW)", result["events"], result["seconds"], ok, note)


def step_ours(
    ctx: Ctx, name: str, topic: str, expected: Expected, env: dict[str, str], workers: int = 1
) -> tuple[Step, float]:
    """`iis-portscan worker` on a filled topic, from its first event to the last alert; peak RSS (of the
    largest process). With `workers` > 1, that many worker processes in one consumer group (scale-out)."""
    alerts = ctx.topic(f"{name}-alerts")
    reader = AlertReader(ctx.brokers, alerts)
    common = {
        "PORTSCAN_INPUT_TOPIC": topic,
        "PORTSCAN_ALERT_TOPIC": alerts,
        "PORTSCAN_DLQ_TOPIC": f"{alerts}-dlq",
        "PORTSCAN_APP_ID": f"{ctx.prefix}-{name}",
        **env,
    }
    procs = [Worker(ctx, name if workers == 1 else f"{name}-{i}", common) for i in range(workers)]
    first_worker = procs[0]

    def events() -> int:
        return sum(w.events() for w in procs)

    def check_alive() -> bool:
        for w in procs[1:]:
            if not w.alive():
                raise w.fail("exited")
        return True

    try:
        first = wait_until(lambda: check_alive() and events() > 0, 120, "the first event", first_worker, 0.02)
        counted_from = 0
        if workers > 1:  # measure once every worker holds input partitions: not the joining rebalances
            group = common["PORTSCAN_APP_ID"]
            first = wait_until(
                lambda: check_alive() and group_members_with(ctx, group, topic) >= workers,
                300,
                f"{workers} workers sharing the input",
                first_worker,
                0.1,
            )
            counted_from = events()
        cpu_first = sum(proc_cpu_s(w.proc.pid) for w in procs)
        done = wait_until(
            lambda: check_alive() and events() >= expected.events, 1800, "every event", first_worker, 0.05
        )
        missing = lambda: expected.alert_ids - reader.first_seen.keys()  # noqa: E731
        try:
            wait_until(lambda: not missing(), 30, "every expected alert", first_worker)
        except RuntimeError:
            pass  # reported as FAIL below
        last_alert = max(
            (reader.first_seen[a] for a in expected.alert_ids if a in reader.first_seen), default=done
        )
        end = max(done, last_alert)
        cpu = sum(proc_cpu_s(w.proc.pid) for w in procs) - cpu_first
        rss = max(w.peak_rss_mb() for w in procs)
        dead = sum(w.dead_letters() for w in procs)
        got = set(reader.first_seen)
    finally:
        for w in procs:
            w.stop()
        reader.close()
    extra = got - expected.alert_ids
    ok = not missing() and not extra and dead == 0
    note = (
        f"{len(got & expected.alert_ids)}/{len(expected.alert_ids)} alerts as replay, {len(extra)} extra, "
        f"{dead} dead letters, peak RSS {rss:.0f} MB"
    )
    if cpu > 0:
        note += f", {(expected.events - counted_from) / cpu:,.0f} events per CPU-second"
    label = f"ours: worker, {name}"
    if workers > 1:
        standbys = env.get("PORTSCAN_STANDBY_REPLICAS", "1")
        label = f"ours: {workers} workers, {name}, {'no' if standbys == '0' else standbys} standby"
        note += f"; measured after the group settled, from event {counted_from:,}"
        if counted_from > expected.events // 2:
            note += " (most events went before the group settled: raise --events for a steady rate)"
    return Step(label, expected.events - counted_from, end - first, ok, note, cpu), rss


def engine_summary(step: Step, rss: float) -> dict[str, Any]:
    return {
        "eps": round(step.eps),
        "eps_per_cpu_s": round(step.events / step.cpu_s) if step.cpu_s > 0 else None,
        "peak_rss_mb": round(rss),
        "ok": step.ok,
    }


def step_engines(
    ctx: Ctx, topic: str, expected: Expected, auto: Step, auto_rss: float, results: dict[str, Any]
) -> list[Step]:
    """The worker (RocksDB, keyed) with each engine (`--engine`, core.native): the run above used `auto`,
    whose choice is said in `results["engine_auto"]`; the other engine runs here on the same topic.
    `results["engines"]` holds each engine's figures (events/s, per CPU-second, peak RSS, check)."""
    from streams.core.native import choose, native_problem

    chosen = choose("auto").name
    results["engine_auto"] = chosen
    engines: dict[str, Any] = {chosen: engine_summary(auto, auto_rss)}
    results["engines"] = engines
    steps = []
    for other in ("python", "native"):
        if other == chosen:
            continue
        problem = native_problem() if other == "native" else None
        if problem is not None:
            log(f"ours: engine native not measured: {problem}")
            continue
        log(f"ours: RocksDB store, --engine {other}")
        step, rss = step_ours(
            ctx,
            f"rocksdb-engine-{other}",
            topic,
            expected,
            {"PORTSCAN_STORE": "rocksdb://", "PORTSCAN_ENGINE": other},
        )
        steps.append(step)
        engines[other] = engine_summary(step, rss)
    if "python" in engines and "native" in engines and engines["python"]["eps"]:
        results["ratio_native_vs_python"] = round(engines["native"]["eps"] / engines["python"]["eps"], 2)
    return steps


def log_time(line: str) -> float:
    """The epoch seconds of a worker log line `[YYYY-mm-dd HH:MM:SS,mmm] ...` (the default log format)."""
    stamp = line[1 : line.index("]")]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000


def step_recovery(ctx: Ctx, app: str, topic: str, per_record: bool = False) -> Step:
    """State recovery: a worker of an app whose run is over starts on an empty data dir (a new host) and
    rebuilds every partition's RocksDB from the changelog; changelog records read per second, from
    faust's "Restoring state" to "Done reading" in its log. `per_record`: through faust's own per-record
    path (--changelog-restore per-record), the baseline of our batched one."""
    changelog = f"{app}-windows-changelog"
    consumer = Consumer({**load.CLIENT, "bootstrap.servers": ctx.brokers, "group.id": f"{ctx.prefix}-wm"})
    try:
        parts = consumer.list_topics(changelog, timeout=10).topics[changelog].partitions
        bounds = [consumer.get_watermark_offsets(TopicPartition(changelog, p)) for p in parts]
        records = sum(hi - lo for lo, hi in bounds)
    finally:
        consumer.close()
    worker = Worker(
        ctx,
        "recovery-per-record" if per_record else "recovery",
        {
            "PORTSCAN_CHANGELOG_RESTORE": "per-record" if per_record else "batched",
            "PORTSCAN_APP_ID": app,
            "PORTSCAN_INPUT_TOPIC": topic,
            "PORTSCAN_ALERT_TOPIC": f"{app}-recovery-alerts",
            "PORTSCAN_DLQ_TOPIC": f"{app}-recovery-dlq",
            "PORTSCAN_STORE": "rocksdb://",
            "PORTSCAN_STANDBY_REPLICAS": "0",
        },
    )
    marks: dict[str, float] = {}

    def done() -> bool:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            for mark in ("Restoring state from changelog topics", "Done reading from changelog topics"):
                if mark in line and line.startswith("["):
                    marks.setdefault(mark, log_time(line))
        return len(marks) == 2

    try:
        wait_until(done, 600, "the end of recovery", worker, poll=0.2)
    finally:
        worker.stop()
    begun, ended = marks["Restoring state from changelog topics"], marks["Done reading from changelog topics"]
    note = f"{records:,} changelog records of {len(parts)} partitions into an empty data dir"
    seconds = max(ended - begun, 1e-3)
    how = "faust's per-record path" if per_record else "a fetch at a time"
    return Step(f"ours: recovery from the changelog, {how} (records/s)", records, seconds, records > 0, note)


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    windows: int
    rate: float
    ok: bool
    note: str


def step_latency(ctx: Ctx, rate: float, seconds: float, seed: int, engine: str = "") -> Latency:
    """At a fixed produce rate, time from producing the event that takes a window to the threshold
    to consuming its early alert."""
    params = RuleParams()
    n = int(rate * seconds)
    now_ms = int(time.time() * 1000)
    work = Workload(
        events=n, seed=seed, start_ms=now_ms - 3_600_000, span_ms=3_600_000, benign_clients=20_000
    )
    log(f"latency: generating {n:,} events to send at {rate:,.0f}/s")
    prepared: list[tuple[bytes, bytes, int]] = []
    crossing_index: dict[int, str] = {}  # index of the event that takes a window to the threshold
    crossing = Crossing()
    for i, (event, key, value) in enumerate(encoded(generate(work))):
        prepared.append((key, value, event.time_ms))
        crossed = crossing.observe(event, params)
        if crossed is not None:
            crossing_index[i] = crossed
    topic = ctx.topic(f"latency{'-' + engine if engine else ''}-in")
    alerts = ctx.topic(f"latency{'-' + engine if engine else ''}-alerts")
    reader = AlertReader(ctx.brokers, alerts)
    worker = Worker(
        ctx,
        f"latency{'-' + engine if engine else ''}",
        {
            "PORTSCAN_INPUT_TOPIC": topic,
            "PORTSCAN_ALERT_TOPIC": alerts,
            "PORTSCAN_DLQ_TOPIC": f"{alerts}-dlq",
            **({"PORTSCAN_ENGINE": engine} if engine else {}),
        },
    )
    sent_at: dict[str, float] = {}
    try:
        wait_assigned(ctx, f"{ctx.prefix}-{worker.name}", worker)
        time.sleep(1.0)
        sender = Sender(ctx.brokers, linger_ms=2)
        produce = sender.producer.produce
        start = time.perf_counter()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                key, value, ts = prepared[i]
                try:
                    produce(topic, value=value, key=key, timestamp=ts, on_delivery=sender._delivered)
                except BufferError:
                    sender.producer.poll(0.01)
                    continue
                if i in crossing_index:
                    sent_at[crossing_index[i]] = time.perf_counter()
                i += 1
            sender.producer.poll(0)
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        sender.flush()
        wait_until(lambda: worker.events() >= n, 120, "every latency event", worker, poll=0.1)
        try:
            wait_until(lambda: not (sent_at.keys() - reader.early_seen.keys()), 30, "early alerts", worker)
        except RuntimeError:
            pass
    finally:
        worker.stop()
        reader.close()
    lat = sorted((reader.early_seen[a] - t) * 1000 for a, t in sent_at.items() if a in reader.early_seen)
    missing = len(sent_at) - len(lat)
    if not lat:
        return Latency(float("nan"), float("nan"), float("nan"), 0, n / elapsed, False, "no early alert seen")

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    note = (
        f"{len(lat)} windows crossed the threshold, {missing} without an early alert; "
        f"sent at {n / elapsed:,.0f}/s"
    )
    return Latency(pct(0.50), pct(0.99), lat[-1], len(lat), n / elapsed, missing == 0, note)


def one_bin_many_keys(keys: int, bin_start_ms: int) -> Iterator[dict[str, Any]]:
    """`keys` requests from as many distinct client IPs, all inside one 10-minute bin."""
    step = 600_000 / keys
    for i in range(keys):
        yield {
            "TimeGenerated": format_iso_ms(bin_start_ms + int(i * step)),
            "Computer": "WEB01.contoso.local",
            "sIP": "10.0.0.11",
            "sPort": 443,
            "cIP": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "csMethod": "GET",
            "csUriStem": "/index.html",
            "csUriQuery": "-",
            "csUserName": "-",
            "sSiteName": "W3SVC1",
            "csUserAgent": "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)",
            "scStatus": "200",
            "scSubStatus": "0",
            "scWin32Status": "0",
            "Type": "W3CIISLog",
        }


def step_memory(ctx: Ctx, keys: int) -> tuple[Step, float]:
    now_ms = int(time.time() * 1000)
    bin_start_ms = now_ms - now_ms % 600_000 - 3_600_000
    topic = ctx.topic("keys-in")
    log(f"memory: producing {keys:,} events from {keys:,} client IPs in one bin")
    (expected,), _ = fill(ctx.brokers, [(topic, 0)], one_bin_many_keys(keys, bin_start_ms), RuleParams())
    step, rss = step_ours(ctx, "keys", topic, expected, {})
    step.name = f"ours: worker, rocksdb, {keys:,} keys in one bin"
    return step, rss


def hostile_scanners(
    scanners: int, requests: int, value_bytes: int, bin_start_ms: int
) -> Iterator[dict[str, Any]]:
    """`scanners` clients in one bin, each sending `requests` requests to as many ports, every one with
    a unique user agent, query and user name of `value_bytes`: the most state a client can make a
    window hold (each set at its 2 x cap values of --max-value-bytes between checkpoints)."""
    step = 600_000 // (scanners * requests)
    pad = "x" * value_bytes
    for n in range(scanners * requests):
        i, r = divmod(n, scanners)
        unique = f"{r:04d}-{i:05d}-{pad}"
        yield {
            "TimeGenerated": format_iso_ms(bin_start_ms + n * step),
            "Computer": "WEB01.contoso.local",
            "sIP": "10.0.0.11",
            "sPort": 1000 + i,
            "cIP": f"203.0.{r >> 8 & 255}.{r & 255}",
            "csMethod": "GET",
            "csUriQuery": unique,
            "csUserName": unique,
            "sSiteName": "W3SVC1",
            "csUserAgent": unique,
            "scStatus": "404",
            "scSubStatus": "0",
            "scWin32Status": "2",
            "Type": "W3CIISLog",
        }


def idle_rss_mb(ctx: Ctx) -> float:
    """Peak RSS of a worker that started on an empty topic and consumed nothing: the baseline."""
    topic = ctx.topic("idle-in")
    worker = Worker(ctx, "idle", {"PORTSCAN_INPUT_TOPIC": topic, "PORTSCAN_ALERT_TOPIC": f"{topic}-alerts"})
    try:
        wait_until(lambda: "iis_portscan_partitions" in worker.metrics(), 120, "an idle worker", worker, 0.2)
        time.sleep(3)
        return worker.peak_rss_mb()
    finally:
        worker.stop()


def step_memory_hostile(ctx: Ctx, scanners: int, baseline_rss: float) -> tuple[Step, float]:
    """Memory under hostile cardinality: windows whose sets hold the most a client can put in them."""
    now_ms = int(time.time() * 1000)
    bin_start_ms = now_ms - now_ms % 600_000 - 3_600_000
    requests, value_bytes = 300, 1500  # 300 distinct values per set > 2 x cap; values cut to 1 KiB
    topic = ctx.topic("hostile-in")
    log(f"memory: {scanners} scanners x {requests} requests with unique {value_bytes}-byte values")
    records = hostile_scanners(scanners, requests, value_bytes, bin_start_ms)
    (expected,), _ = fill(ctx.brokers, [(topic, 0)], records, RuleParams())
    step, rss = step_ours(ctx, "hostile", topic, expected, {})
    per_window_kb = max(0.0, rss - baseline_rss) * 1024 / scanners
    step.name = f"ours: rocksdb, {scanners} hostile windows"
    step.note += f"; ~{per_window_kb:,.0f} KB per hostile window over the idle worker"
    return step, rss


# ---------------------------------------------------------------------------- memory under a bound
# A flood of distinct clients in one bin (issue 23: 2,000,000 IPv6 addresses), with --max-open-windows:
# the worker spills, reads spilled windows back when their client returns, and closes the bin from the
# store; then a restart on the stored state restores only what the bound allows. A memory limit is
# applied as the kernel's OOM killer would apply a pod's: a watchdog kills the worker whose RSS passes
# it, and the peak (VmHWM, which no poll can miss) must stay below it.

FLOOD_SCANNERS = 20  # per group: spilled and never back; spilled and back; only at the end
FLOOD_PORTS = 40


def flood_bin(keys: int, bin_start_ms: int) -> Iterator[dict[str, Any]]:
    """`keys` one-request clients (IPv6, all distinct) spread over one bin, in time order, plus three
    groups of port scanners: A sends its 40 ports at the start of the bin (spilled by the flood, closed
    from the store), B 10 ports at the start and 30 at the end (spilled, then read back), C all 40 at
    the end (in memory when the bin closes)."""

    def request(t: int, cip: str, port: int) -> dict[str, Any]:
        return {
            "TimeGenerated": format_iso_ms(t),
            "Computer": "WEB01.contoso.local",
            "sIP": "10.0.0.11",
            "sPort": port,
            "cIP": cip,
            "csMethod": "GET",
            "csUriStem": "/",
            "csUriQuery": "-",
            "csUserName": "-",
            "sSiteName": "W3SVC1",
            "csUserAgent": "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)",
            "scStatus": "404",
            "scSubStatus": "0",
            "scWin32Status": "2",
            "Type": "W3CIISLog",
        }

    def scanner(group: str, n: int) -> str:
        return f"2001:db8:ffff:{group}::{n:x}"

    t = bin_start_ms
    for n in range(FLOOD_SCANNERS):
        for port in range(FLOOD_PORTS):
            yield request(t, scanner("a", n), 8000 + port)
        for port in range(10):
            yield request(t, scanner("b", n), 8000 + port)
    span = 590_000  # the flood; the last 10 s of the bin hold the returning scanners
    for i in range(keys):
        cip = f"2001:db8:{i >> 32 & 0xFFFF:x}:{i >> 16 & 0xFFFF:x}:{i & 0xFFFF:x}::1"
        yield request(bin_start_ms + 1 + i * span // keys, cip, 443)
    t = bin_start_ms + span + 5_000
    for n in range(FLOOD_SCANNERS):
        for port in range(10, FLOOD_PORTS):
            yield request(t, scanner("b", n), 8000 + port)
        for port in range(FLOOD_PORTS):
            yield request(t, scanner("c", n), 8000 + port)


class PhaseReader(AlertReader):
    """Our alert topic, with the AlertIds of the final alerts."""

    def __init__(self, brokers: str, topic: str) -> None:
        self.final_seen: set[str] = set()
        super().__init__(brokers, topic)

    def on_alert(self, alert: dict[str, Any], now: float) -> None:
        super().on_alert(alert, now)
        if alert.get("Phase") == "final":
            self.final_seen.add(alert["AlertId"])


class RssWatchdog:
    """Kills a process whose RSS passes `limit_mb`, as a pod's memory limit would (polled every 20 ms)."""

    def __init__(self, pid: int, limit_mb: float) -> None:
        self.pid, self.limit_mb = pid, limit_mb
        self.killed_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.wait(0.02):
            try:
                text = status.read_text()
            except OSError:
                return
            rss = next((int(x.split()[1]) / 1024 for x in text.splitlines() if x.startswith("VmRSS:")), 0.0)
            if rss > self.limit_mb:
                self.killed_at = rss
                os.kill(self.pid, signal.SIGKILL)
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def step_memory_bound(
    ctx: Ctx, keys: int, bound: int, limit_mb: float, baseline: bool
) -> tuple[list[Step], dict[str, Any]]:
    """`keys` distinct clients in one bin through a worker holding at most `bound` open windows under
    `limit_mb` of RSS; stopped, restarted on its stored state (restore), the bin closed by a later event:
    every alert (early and final) must be replay's. With `baseline`, the same flood without the bound
    (no limit applied: the peak it reaches is the number)."""
    now_ms = int(time.time() * 1000)
    bin_start_ms = now_ms - now_ms % 600_000 - 3_600_000
    topic = ctx.topic("flood-in")
    log(f"memory bound: producing {keys:,} events from {keys:,} IPv6 clients in one bin (+ scanners)")
    (expected,), load_s = fill(
        ctx.brokers,
        [(topic, 0)],
        flood_bin(keys, bin_start_ms),
        RuleParams(),
        progress=lambda n: log(f"load: {n:,}"),
    )
    log(
        f"memory bound: {expected.events:,} events in {load_s:.1f}s; "
        f"replay finds {len(expected.alert_ids)} alerts"
    )
    # Watermarks are per partition: one event after the bin's end + grace from 64 clients reaches
    # every partition (of a few) and closes the bin in each.
    closers = [
        {
            "TimeGenerated": format_iso_ms(bin_start_ms + 600_000 + 120_000),
            "Computer": "WEB01.contoso.local",
            "sIP": "10.0.0.11",
            "sPort": 443,
            "cIP": f"2001:db8:ffff:ffff::{n:x}",
            "Type": "W3CIISLog",
        }
        for n in range(64)
    ]
    results: dict[str, Any] = {"keys": keys, "bound": bound, "limit_mb": limit_mb}
    steps: list[Step] = []
    alerts = ctx.topic("flood-alerts")
    reader = PhaseReader(ctx.brokers, alerts)
    env = {
        "PORTSCAN_INPUT_TOPIC": topic,
        "PORTSCAN_ALERT_TOPIC": alerts,
        "PORTSCAN_DLQ_TOPIC": f"{alerts}-dlq",
        "PORTSCAN_MAX_OPEN_WINDOWS": str(bound),
        "PORTSCAN_IDLE_TIMEOUT": "0",  # the bin closes by event time only: by the closer, in run 2
    }

    def watched(
        worker: Worker, what: str, pred: Callable[[], bool], timeout: float
    ) -> tuple[float, float, float]:
        """(seconds, CPU seconds, peak RSS MB) of `worker` until `pred`, under the limit."""
        dog = RssWatchdog(worker.proc.pid, limit_mb)
        try:
            started = time.perf_counter()
            cpu0 = proc_cpu_s(worker.proc.pid)
            wait_until(pred, timeout, what, worker, 0.1)
            seconds = time.perf_counter() - started
            return seconds, proc_cpu_s(worker.proc.pid) - cpu0, worker.peak_rss_mb()
        except RuntimeError as exc:
            if dog.killed_at is not None:
                why = f"{what}: killed at {dog.killed_at:.0f} MB RSS (limit {limit_mb:.0f} MB)"
                raise RuntimeError(why) from exc
            raise
        finally:
            dog.close()

    try:
        first = Worker(ctx, "flood", env)
        try:
            seconds, cpu, rss1 = watched(
                first, "every flood event", lambda: first.events() >= expected.events, 3600
            )
            spilled = first.metrics().get("iis_portscan_windows_spilled_total", 0)
            dead = first.dead_letters()
        finally:
            first.stop()
        early = len(reader.early_seen.keys() & expected.alert_ids)
        ok1 = rss1 < limit_mb and dead == 0
        steps.append(
            Step(
                f"ours: {keys:,} clients in one bin, bound {bound:,}",
                expected.events,
                seconds,
                ok1,
                f"peak RSS {rss1:.0f} MB (limit {limit_mb:.0f}), {spilled:,.0f} windows spilled, "
                f"{early}/{len(expected.alert_ids)} early alerts so far, "
                f"{expected.events / cpu:,.0f} events per CPU-second",
                cpu,
            )
        )
        results.update(
            flood_seconds=round(seconds, 1), flood_peak_rss_mb=round(rss1), windows_spilled=spilled
        )
        shutil.move(str(first.log_path), str(first.log_path.with_suffix(".run1.log")))
        fill(ctx.brokers, [(topic, 0)], closers, RuleParams())
        second = Worker(ctx, "flood", env)  # same app id and data dir: a restart on the stored state
        try:
            missing = lambda: expected.alert_ids - reader.final_seen  # noqa: E731
            # every final alert, and every partition's bin closed (not only those of alerting windows)
            closed_all = lambda: second.metrics().get("iis_portscan_spilled_windows", 1) == 0  # noqa: E731
            seconds, cpu, rss2 = watched(
                second, "every final alert and the close", lambda: not missing() and closed_all(), 1200
            )
            closed = second.metrics().get("iis_portscan_spilled_windows_closed_total", 0)
        finally:
            second.stop()
        got = set(reader.first_seen)
        extra = got - expected.alert_ids
        ok2 = (
            rss2 < limit_mb and not missing() and not extra and reader.early_seen.keys() == expected.alert_ids
        )
        steps.append(
            Step(
                "ours: restart on that state, the bin closed",
                keys,
                seconds,
                ok2,
                f"peak RSS {rss2:.0f} MB (limit {limit_mb:.0f}); {closed:,.0f} spilled windows read back at "
                f"close; alerts: {len(reader.early_seen.keys() & expected.alert_ids)} early, "
                f"{len(reader.final_seen & expected.alert_ids)} final "
                f"of {len(expected.alert_ids)} as replay, "
                f"{len(extra)} extra",
                cpu,
            )
        )
        results.update(
            restart_seconds=round(seconds, 1), restart_peak_rss_mb=round(rss2), spilled_closed=closed
        )
        results["alerts_equal_replay"] = ok2
    finally:
        reader.close()
    if baseline:
        log("memory bound: the same flood without the bound (no limit applied)")
        step, rss = step_ours(
            ctx,
            "flood-unbounded",
            topic,
            expected,
            {"PORTSCAN_MAX_OPEN_WINDOWS": "0", "PORTSCAN_IDLE_TIMEOUT": "0"},
        )
        step.name = f"ours: {keys:,} clients in one bin, unbounded"
        step.ok = True  # a baseline: its early alerts are checked by step_ours; the number is its peak
        steps.append(step)
        results["unbounded_peak_rss_mb"] = round(rss)
    return steps, results


# ------------------------------------------------------------------------------------------- peers
# What users would pick instead, on the same topic in the same run: Kafka Streams (benchmarks/peers/
# kstreams, built with Maven) and Quix Streams (benchmarks/peers/quix_peer.py, in its own virtualenv).
# Both emit a window once it has closed (event time past its end + grace, per partition), so a peer's
# answer is checked against replay's alerts over the windows it can have closed.

PEERS = ROOT / "benchmarks" / "peers"
CACHE = Path(os.environ.get("PORTSCAN_CACHE", ROOT / ".cache"))
KSTREAMS_VERSION = (PEERS / "kstreams" / "pom.xml").read_text().split("<kafka.version>")[1].split("<")[0]
PEER_GRACE_MS = 120_000  # the worker's --grace default; both peers use the same
# The alert columns compared with replay's for every window a peer reports (its key: WindowStart,
# cIP, Computer, sIP): the rule's counts and sets, enriched as streams/core/enrich.py does.
PEER_COLUMNS = (
    "TimeGenerated",
    "WindowEnd",
    "set_sPort",
    "portCount",
    "DistinctPortCount",
    "ConnectionsCount",
    *SET_COLUMNS,
    "FirstSeen",
    "LastSeen",
)
WindowId = tuple[str, str, str, str]  # (WindowStart, cIP, Computer, sIP)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a process so far: utime + stime of all its threads, children included."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()  # fields from the 3rd on (comm may hold spaces)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def source_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def kstreams_build() -> Path:
    """The Kafka Streams peer's jar and its runtime jars (lib/), built once per source hash with the
    Maven and JDK that the broker needs (`mvn -q -B package`, from Maven Central), under .cache/."""
    src = PEERS / "kstreams"
    files = [p for p in src.rglob("*") if p.is_file() and "target" not in p.relative_to(src).parts]
    out = CACHE / f"kstreams-{source_hash(files)}"
    if (out / ".complete").exists():
        return out
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed for the Kafka Streams peer (it also runs the broker)")
    log(f"kstreams: building the peer with Maven into {out}")
    for stale in CACHE.glob("kstreams-*"):  # builds of earlier sources
        shutil.rmtree(stale, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(src / "pom.xml"), "package"]
    built = subprocess.run(
        [*cmd, f"-Dpeer.build.dir={out}"], capture_output=True, text=True, timeout=1200, check=False
    )
    if built.returncode != 0:
        raise RuntimeError("kstreams: mvn package failed:\n" + (built.stdout + built.stderr)[-3000:])
    (out / ".complete").touch()
    return out


def quix_python() -> Path:
    """A virtualenv with Quix Streams (benchmarks/peers/quix-requirements.txt), made once under .cache/:
    Quix Streams pins confluent-kafka below the version the worker uses, so it cannot share .venv."""
    requirements = PEERS / "quix-requirements.txt"
    venv = CACHE / f"quix-venv-{source_hash([requirements])}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    log(f"quix: installing {requirements.read_text().strip()} into {venv}")
    for stale in CACHE.glob("quix-venv-*"):  # made from earlier requirements
        shutil.rmtree(stale, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, "-r", str(requirements)], capture_output=True, text=True, timeout=1200, check=False
    )
    if installed.returncode != 0:
        raise RuntimeError("quix: pip install failed:\n" + (installed.stdout + installed.stderr)[-3000:])
    (venv / ".complete").touch()
    return python


@dataclass
class Replayed:
    """replay's answer over what a topic holds, read back, and each partition's newest event time."""

    alerts: dict[WindowId, dict[str, Any]]
    events: int
    newest_ms: list[int]

    def closable(self, grace_ms: int) -> tuple[set[WindowId], set[WindowId]]:
        """(required, possible): alerting windows closed in every partition's event time, and those
        that a partition's event time may have closed (the ones left differ by a few seconds)."""
        oldest, newest = min(self.newest_ms), max(self.newest_ms)
        required: set[WindowId] = set()
        possible: set[WindowId] = set()
        for key, alert in self.alerts.items():
            closes_at = (parse_iso_ms(alert["WindowEnd"]) or 0) + grace_ms
            if closes_at < oldest:
                required.add(key)
            if closes_at <= newest:
                possible.add(key)
        return required, possible


def window_id(alert: dict[str, Any]) -> WindowId:
    return (alert["WindowStart"], alert["cIP"], alert["Computer"], alert["sIP"])


def replay_topic(ctx: Ctx, topic: str, params: RuleParams) -> Replayed:
    """Read `topic` back and run the core's OfflineRule (what `replay` runs) over it, settling the
    windows that every partition has passed as it goes."""
    consumer = Consumer(
        {
            **load.CLIENT,
            "bootstrap.servers": ctx.brokers,
            "group.id": f"{ctx.prefix}-replay",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
        }
    )
    parts = sorted(ctx.admin.list_topics(timeout=10).topics[topic].partitions)
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    detector = OfflineRule(params)
    windows, cap = detector.windows, params.max_set_size
    alerts: dict[WindowId, dict[str, Any]] = {}
    newest = [-1] * len(parts)
    read = [0] * len(parts)
    total = sum(ends)

    def settle(before_ms: int | None) -> None:
        for key in [k for k in windows if before_ms is None or k.start_ms + params.bin_ms <= before_ms]:
            agg = windows.pop(key)
            if agg.port_count(cap) >= params.threshold:
                alert = build_alert(key, agg, params)
                alerts[window_id(alert)] = alert

    events, next_settle = 0, 200_000
    deadline = time.perf_counter() + 600 + total / 5_000
    try:
        while events < total and time.perf_counter() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    continue
                events += 1
                p = msg.partition()
                read[p] = msg.offset() + 1
                for event in parse_json(msg.value()):
                    if isinstance(event, IISEvent):
                        detector.add(event)
                        newest[p] = max(newest[p], event.time_ms)
            if events >= next_settle:
                next_settle += 200_000
                behind = [newest[p] for p in parts if read[p] < ends[p]]
                if behind and min(behind) > 0:
                    settle(min(behind) - params.bin_ms)
    finally:
        consumer.close()
    if events < total:
        raise RuntimeError(f"replay of {topic}: read {events:,} of {total:,} records")
    settle(None)
    return Replayed(alerts, events, newest)


class PeerProcess:
    """A peer in a subprocess: the JSON progress lines it prints on stdout, its log, its /proc."""

    def __init__(self, ctx: Ctx, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = ctx.work / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.last: dict[str, Any] = {}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, **(env or {})}, cwd=ROOT
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "events" in doc:
                self.last = doc
            else:
                self._log.write(line)

    def events(self) -> int:
        return int(self.last.get("events", 0))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        self._log.close()

    def fail(self, why: str) -> RuntimeError:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return RuntimeError(f"{self.name}: {why}\n" + "\n".join(tail))


class PeerReader(AlertFollower):
    """A peer's alert topic: each window's alert and when it was first seen."""

    def __init__(self, brokers: str, topic: str) -> None:
        self.alerts: dict[WindowId, dict[str, Any]] = {}
        self.seen_at: dict[WindowId, float] = {}
        self.repeated = 0
        super().__init__(brokers, topic)

    def on_alert(self, alert: dict[str, Any], now: float) -> None:
        key = window_id(alert)
        if key in self.alerts:
            self.repeated += 1
        else:
            self.seen_at[key] = now
        self.alerts[key] = alert


@dataclass
class PeerRun:
    step: Step
    cpu_s: float
    rss_mb: float

    @property
    def eps_per_cpu(self) -> float:
        return self.step.events / self.cpu_s if self.cpu_s > 0 else 0.0


def check_peer(replayed: Replayed, got: dict[WindowId, dict[str, Any]], repeated: int) -> tuple[bool, str]:
    """A peer's alerts against replay's: every window closed everywhere is there, none is reported
    that replay does not find or that cannot have closed, and PEER_COLUMNS are equal."""
    required, possible = replayed.closable(PEER_GRACE_MS)
    missing = required - got.keys()
    unexpected = got.keys() - possible
    different = [
        key
        for key in got.keys() & replayed.alerts.keys()
        if any(got[key].get(c) != replayed.alerts[key][c] for c in PEER_COLUMNS)
    ]
    ok = not (missing or unexpected or different or repeated)
    note = f"{len(required) - len(missing)}/{len(required)} closable windows as replay"
    if missing or unexpected or different or repeated:
        note += f" ({len(missing)} missing, {len(unexpected)} unexpected, {len(different)} different"
        note += f", {repeated} repeated)"
        if different:
            key = different[0]
            cols = [c for c in PEER_COLUMNS if got[key].get(c) != replayed.alerts[key][c]]
            log(f"peer answer differs at {key} in {cols}: {[got[key].get(c) for c in cols[:2]]}")
    return ok, note


def delete_topics_like(ctx: Ctx, part: str) -> None:
    """Delete the topics whose name contains `part` (a peer's internal topics: Quix names them
    changelog__<group>--... and repartition__<group>--..., outside the run's prefix)."""
    names = [t for t in ctx.admin.list_topics(timeout=10).topics if part in t]
    if names:
        for future in ctx.admin.delete_topics(names, operation_timeout=60).values():
            try:
                future.result(timeout=60)
            except Exception as exc:
                log(f"could not delete a topic: {exc}")


def run_peer(
    ctx: Ctx,
    name: str,
    label: str,
    cmd: list[str],
    env: dict[str, str] | None,
    replayed: Replayed,
    late_line: str,
) -> PeerRun:
    """Run a peer on a filled topic, from its first event read to the last closable window's alert
    received; CPU over that span (process, threads and children), peak RSS of the process. `late_line`:
    what the peer logs for each record it drops as late (counted in the note)."""
    app_id = f"{ctx.prefix}-{name}"
    alerts = ctx.topic(f"{name}-alerts")
    reader = PeerReader(ctx.brokers, alerts)
    peer = PeerProcess(ctx, name, [*cmd, "--output", alerts, "--app-id", app_id], env)
    required, _ = replayed.closable(PEER_GRACE_MS)
    n = replayed.events
    try:
        wait_until(lambda: peer.last.get("first_cpu_ns", 0) > 0, 180, "the first event", peer, 0.02)
        first = time.perf_counter() - (time.time() - peer.last["first_ms"] / 1000)
        first_cpu = peer.last["first_cpu_ns"] / 1e9
        done = wait_until(lambda: peer.events() >= n, 600 + n / 1_000, "every event", peer, 0.05)
        try:
            wait_until(lambda: required <= reader.seen_at.keys(), 60, "every closable window", peer)
        except RuntimeError:
            pass  # reported as FAIL below
        cpu = proc_cpu_s(peer.proc.pid) - first_cpu
        end = max([done, *(reader.seen_at[k] for k in required if k in reader.seen_at)])
        time.sleep(2.0)  # what the peer sends next is checked too: a window twice, one not closed
        rss = proc_peak_rss_mb(peer.proc.pid)
        got = dict(reader.alerts)
    finally:
        peer.stop()
        reader.close()
        delete_topics_like(ctx, app_id)
    ok, note = check_peer(replayed, got, reader.repeated)
    with open(peer.log_path, "rb") as peer_log:
        late = sum(late_line.encode() in line for line in peer_log)
    if late:
        note += f", {late:,} records dropped as late"
    run = PeerRun(Step(label, n, end - first, ok, note, cpu), cpu, rss)
    run.step.note += f"; {run.eps_per_cpu:,.0f} events per CPU-second, peak RSS {rss:.0f} MB"
    return run


def step_kstreams(
    ctx: Ctx, topic: str, replayed: Replayed, threads: int, keyed: bool, jvm_opts: str
) -> PeerRun:
    """The Kafka Streams peer: suppress(untilWindowCloses) over a RocksDB window store."""
    build = kstreams_build()
    name = f"kstreams-{threads}t" + ("" if keyed else "-unkeyed")
    cmd = [
        "java",
        *shlex.split(jvm_opts),
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        f"{build / 'portscan-kstreams.jar'}:{build / 'lib'}/*",
        "portscan.PortScanStreams",
        "--brokers",
        ctx.brokers,
        "--input",
        topic,
        "--state-dir",
        str(ctx.work / name),
        "--threads",
        str(threads),
        "--keyed",
        "true" if keyed else "false",
    ]
    topology = "keyed input" if keyed else "unkeyed: selectKey + repartition"
    label = f"Kafka Streams {KSTREAMS_VERSION}, {threads} thread{'s' if threads > 1 else ''}, {topology}"
    log(f"peer: {label}")
    return run_peer(ctx, name, label, cmd, None, replayed, "Skipping record for expired window")


def step_quix(ctx: Ctx, topic: str, replayed: Replayed, keyed: bool) -> PeerRun:
    """The Quix Streams peer: tumbling_window + reduce, final() (closing by partition)."""
    python = quix_python()
    name = "quix" if keyed else "quix-unkeyed"
    cmd = [
        str(python),
        "-m",
        "benchmarks.peers.quix_peer",
        "--brokers",
        ctx.brokers,
        "--input",
        topic,
        "--state-dir",
        str(ctx.work / name),
        *([] if keyed else ["--unkeyed"]),
    ]
    topology = "keyed input" if keyed else "unkeyed: group_by + repartition"
    label = f"Quix Streams {quix_version()}, {topology}"
    log(f"peer: {label}")
    env = {"PYTHONPATH": str(ROOT)}
    return run_peer(ctx, name, label, cmd, env, replayed, "Skipping window processing for the closed window")


def java_version() -> str:
    try:
        shown = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    return (shown.stderr.strip().splitlines() or ["?"])[0]


def quix_version() -> str:
    pins = (PEERS / "quix-requirements.txt").read_text()
    return pins.split("quixstreams==")[1].split()[0] if "quixstreams==" in pins else "?"


def copy_unkeyed(ctx: Ctx, topic: str) -> str:
    """The records of `topic` again, without keys, in event-time order (what a log shipper writes):
    the input of the default topology (router and repartition topic)."""
    dest = ctx.topic("unkeyed-in")
    parts = sorted(ctx.admin.list_topics(timeout=10).topics[topic].partitions)

    def records(p: int) -> Iterator[tuple[int, int, bytes]]:
        consumer = Consumer(
            {
                **load.CLIENT,
                "bootstrap.servers": ctx.brokers,
                "group.id": f"{ctx.prefix}-copy",
                "enable.auto.commit": False,
            }
        )
        end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)])
        offset = 0
        try:
            while offset < end:
                for msg in consumer.consume(5_000, 1.0):
                    if msg.error() is None:
                        offset = msg.offset() + 1
                        yield msg.timestamp()[1], p, msg.value()
        finally:
            consumer.close()

    sender = Sender(ctx.brokers)
    produce = sender.producer.produce
    started = time.perf_counter()
    for ts, _, value in heapq.merge(*(records(p) for p in parts)):
        while True:
            try:
                produce(dest, value=value, timestamp=ts, on_delivery=sender._delivered)
                break
            except BufferError:
                sender.producer.poll(0.05)
        sender.sent += 1
        if sender.sent % 5_000 == 0:
            sender.producer.poll(0)
    sender.flush()
    log(f"unkeyed: {sender.sent:,} records copied without keys in {time.perf_counter() - started:.1f}s")
    return dest


def add_peer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kstreams-threads", default="1,2", help="stream threads of the Kafka Streams runs (best reported)"
    )
    parser.add_argument(
        "--kstreams-jvm-opts", default="-Xmx1g", help="JVM options of the Kafka Streams peer (heap)"
    )
    parser.add_argument(
        "--peers-unkeyed",
        action="store_true",
        help="also run the peers on unkeyed input (re-keyed through a repartition topic): on a backlog "
        "they drop most records as late (see the README), so their rows FAIL",
    )


def run_peers(
    ctx: Ctx,
    args: argparse.Namespace,
    skip: set[str],
    topic: str,
    expected: Expected,
    ours: Step,
    ours_rss: float,
    results: dict[str, Any],
) -> list[Step]:
    """Our worker on unkeyed input (default topology), then Kafka Streams and Quix Streams on the same
    topics; their figures and ratios go to `results`. Skip names: unkeyed, kstreams, quix."""
    steps: list[Step] = []
    if ours.cpu_s > 0:
        results["ours_eps_per_cpu_s"] = round(ours.events / ours.cpu_s)
    results["ours_peak_rss_mb"] = round(ours_rss)
    unkeyed = None
    if "unkeyed" not in skip:
        unkeyed = copy_unkeyed(ctx, topic)
        log("ours: worker on unkeyed input (the default topology: router and repartition topic)")
        env = {"PORTSCAN_STORE": "rocksdb://", "PORTSCAN_INPUT_KEYED": "false"}
        label = "ours: worker, rocksdb, unkeyed input"
        try:
            step, rss = step_ours(ctx, "unkeyed", unkeyed, expected, env)
        except RuntimeError as exc:
            log(f"{label}: {exc}")
            step, rss = Step(label, 0, 0.0, False, f"error: {str(exc).splitlines()[0][:160]}"), 0.0
        step.name = label
        steps.append(step)
        results["ours_unkeyed_eps"] = round(step.eps)
        if step.cpu_s > 0:
            results["ours_unkeyed_eps_per_cpu_s"] = round(step.events / step.cpu_s)
        results["ours_unkeyed_peak_rss_mb"] = round(rss)
        results["ratio_unkeyed_vs_keyed"] = round(step.eps / ours.eps, 2) if ours.eps else None
    want = [name for name in ("kstreams", "quix") if name not in skip]
    if not want:
        return steps
    log(f"peers: replay over {topic} (the peers' answer)")
    replayed = replay_topic(ctx, topic, RuleParams())
    found = {alert["AlertId"] for alert in replayed.alerts.values()}
    if found != expected.alert_ids:
        log(f"peers: replay of the topic finds {len(found)} alerts, the load's {len(expected.alert_ids)}")
    required, _ = replayed.closable(PEER_GRACE_MS)
    results["peer_closable_windows"] = len(required)
    results["peer_columns_compared"] = list(PEER_COLUMNS)

    def attempt(label: str, run: Callable[[], PeerRun]) -> PeerRun:
        """A peer that cannot run (build, install, crash) is a FAIL row, not the end of the bench."""
        try:
            return run()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log(f"{label}: {exc}")
            return PeerRun(Step(label, 0, 0.0, False, f"error: {str(exc).splitlines()[0][:160]}"), 0.0, 0.0)

    def record(key: str, run: PeerRun) -> None:
        results[f"{key}_eps"] = round(run.step.eps)
        results[f"{key}_eps_per_cpu_s"] = round(run.eps_per_cpu)
        results[f"{key}_peak_rss_mb"] = round(run.rss_mb)
        results[f"{key}_ok"] = run.step.ok

    def ratios(key: str, run: PeerRun) -> None:
        if run.step.eps:
            results[f"ratio_ours_vs_{key}"] = round(ours.eps / run.step.eps, 2)
        if results.get("ours_eps_per_cpu_s") and run.eps_per_cpu:
            per_cpu = results["ours_eps_per_cpu_s"] / run.eps_per_cpu
            results[f"ratio_ours_vs_{key}_per_cpu_s"] = round(per_cpu, 2)

    if "kstreams" in want:
        runs: dict[int, PeerRun] = {}
        for threads in [int(t) for t in args.kstreams_threads.split(",") if t.strip()]:
            runs[threads] = attempt(
                f"kstreams, {threads} threads",
                lambda t=threads: step_kstreams(ctx, topic, replayed, t, True, args.kstreams_jvm_opts),
            )
            steps.append(runs[threads].step)
            record(f"kstreams_{threads}t", runs[threads])
        best = max(runs, key=lambda t: (runs[t].step.ok, runs[t].step.eps))
        record("kstreams", runs[best])
        ratios("kstreams", runs[best])
        results["kstreams_threads"] = best
        results["kstreams_version"] = KSTREAMS_VERSION
        results["java"] = java_version()
        if unkeyed is not None and args.peers_unkeyed:
            run = attempt(
                "kstreams, unkeyed",
                lambda: step_kstreams(ctx, unkeyed, replayed, best, False, args.kstreams_jvm_opts),
            )
            steps.append(run.step)
            record("kstreams_unkeyed", run)
    if "quix" in want:
        run = attempt("quix", lambda: step_quix(ctx, topic, replayed, True))
        steps.append(run.step)
        record("quix", run)
        ratios("quix", run)
        results["quix_version"] = quix_version()
        if unkeyed is not None and args.peers_unkeyed:
            run = attempt("quix, unkeyed", lambda: step_quix(ctx, unkeyed, replayed, False))
            steps.append(run.step)
            record("quix_unkeyed", run)
    return steps


# ------------------------------------------------------------------------------------------- report


def machine(ctx: Ctx) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    import confluent_kafka
    import redis

    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    kafka = pom.split("<kafka.version>")[1].split("<")[0]
    redis_version = redis.Redis.from_url(ctx.redis_url).info("server").get("redis_version", "?")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka,
        "redis": redis_version,
        "faust_streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "orjson": version("orjson"),
        "rocksdict": version("rocksdict"),
        "broker_on_same_machine": True,
    }


def table(steps: list[Step], limit: Step) -> str:
    lines = [f"{'step':48} {'events':>10} {'seconds':>8} {'events/s':>10} {'vs limit':>8}  check"]
    for s in steps:
        ratio = f"{s.eps / limit.eps:.2f}" if limit.eps else "-"
        verdict = "ok" if s.ok else "FAIL"
        lines.append(
            f"{s.name:48} {s.events:>10,} {s.seconds:>8.1f} {s.eps:>10,.0f} {ratio:>8}  {verdict}: {s.note}"
        )
    return "\n".join(lines)


def run_memory_bound(ctx: Ctx, args: argparse.Namespace, results: dict[str, Any], out: Path) -> int:
    """`--only memory-bound`: that step alone, its table and results."""
    try:
        steps, results["memory_bound"] = step_memory_bound(
            ctx, args.flood_keys, args.flood_bound, args.flood_limit_mb, args.flood_baseline
        )
    finally:
        ctx.cleanup()
    for s in steps:
        verdict = "ok" if s.ok else "FAIL"
        print(f"{s.name:48} {s.events:>10,} {s.seconds:>8.1f} {s.eps:>10,.0f}  {verdict}: {s.note}")
    print(json.dumps(results, indent=2))
    results["checks_ok"] = all(s.ok for s in steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return 0 if results["checks_ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events in the throughput topic")
    parser.add_argument(
        "--naive-events", type=int, default=100_000, help="events the naive faust agent reads"
    )
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct client IPs in one bin (memory)")
    parser.add_argument(
        "--hostile-scanners", type=int, default=200, help="windows filled with unique long values (memory)"
    )
    parser.add_argument(
        "--flood-keys",
        type=int,
        default=2_000_000,
        help="distinct IPv6 clients in one bin (memory-bound step)",
    )
    parser.add_argument(
        "--flood-bound",
        type=int,
        default=500_000,
        help="--max-open-windows of the memory-bound step's worker (the worker's default)",
    )
    parser.add_argument(
        "--flood-limit-mb", type=float, default=1024, help="memory limit of the memory-bound step (RSS, MB)"
    )
    parser.add_argument(
        "--flood-baseline",
        action="store_true",
        help="also run the memory-bound step's flood through an unbounded worker (its peak RSS)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="run this one step alone (memory-bound), without the load and throughput steps",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="events/s of the latency step (default: half the rocksdb rate)",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated steps to skip: naive,engines,redis,recovery,scale,unkeyed,kstreams,quix,"
        "latency,memory,memory-bound",
    )
    add_peer_args(parser)
    parser.add_argument(
        "--scale-workers",
        type=int,
        default=2,
        help="also measure this many worker processes in the scale-out step (1, 2 and 4 always are)",
    )
    parser.add_argument("--brokers", default=os.environ.get("PORTSCAN_BROKERS", "127.0.0.1:9092"))
    parser.add_argument(
        "--kafka-config-file",
        default=os.environ.get("PORTSCAN_KAFKA_CONFIG_FILE", ""),
        help="Kafka client properties (librdkafka names: TLS, SASL) for every client of the bench and our "
        "worker; the peers (Kafka Streams, Quix) take plaintext brokers only and are skipped with it",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("PORTSCAN_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--output", default=str(RESULTS / "latest.json"))
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    global KAFKA_CONFIG_FILE
    if args.kafka_config_file:
        from streams.kafka.client_config import KafkaClientConfig

        load.CLIENT.update(KafkaClientConfig.load(args.kafka_config_file).librdkafka())
        KAFKA_CONFIG_FILE = os.path.abspath(args.kafka_config_file)
        skip |= {"kstreams", "quix"}
    check_services(args.brokers, args.redis_url)
    prefix = f"bench-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
    ctx = Ctx(
        args.brokers, args.redis_url, args.partitions, prefix, Path(tempfile.mkdtemp(prefix="iis-bench-"))
    )
    results: dict[str, Any] = {"events": args.events, "machine": machine(ctx)}
    steps: list[Step] = []
    if args.only:
        if args.only != "memory-bound":
            raise SystemExit(f"bench: --only takes memory-bound, got {args.only!r}")
        return run_memory_bound(ctx, args, results, Path(args.output))
    try:
        params = RuleParams()
        work = Workload(events=args.events, seed=args.seed, span_ms=6 * 3_600_000, benign_clients=50_000)
        main_topic = ctx.topic("in")
        naive_topic = ctx.topic("naive-in")
        log(
            f"load: generating and producing {args.events:,} events (+ the first {args.naive_events:,} again)"
        )
        (expected, naive_expected), load_s = fill(
            args.brokers,
            [(main_topic, 0), (naive_topic, args.naive_events)],
            generate(work),
            params,
            progress=lambda n: log(f"load: {n:,}"),
        )
        log(f"load: {args.events:,} events in {load_s:.1f}s; replay finds {len(expected.alert_ids)} alerts")
        steps.append(
            Step(
                "load (generate + produce, confluent batched)",
                args.events,
                load_s,
                True,
                f"replay: {len(expected.alert_ids)} windows alert",
            )
        )
        log("limit: consuming with confluent-kafka + orjson.loads")
        limit = step_limit(ctx, main_topic, args.events)
        steps.append(limit)
        results["limit_eps"] = round(limit.eps)
        if "naive" not in skip:
            log(f"naive faust: {args.naive_events:,} events")
            naive = step_naive(ctx, naive_topic, naive_expected)
            steps.append(naive)
            results["naive_faust_eps"] = round(naive.eps)
        log("ours: RocksDB store")
        rocks, rss = step_ours(ctx, "rocksdb", main_topic, expected, {"PORTSCAN_STORE": "rocksdb://"})
        steps.append(rocks)
        results["ours_rocksdb_eps"] = round(rocks.eps)
        results["peak_rss_mb"] = round(rss)
        if "engines" not in skip:
            steps.extend(step_engines(ctx, main_topic, expected, rocks, rss, results))
        if "recovery" not in skip:
            log("ours: recovery of the RocksDB run's state from its changelog (faust's path, then ours)")
            baseline = step_recovery(ctx, f"{ctx.prefix}-rocksdb", main_topic, per_record=True)
            recovery = step_recovery(ctx, f"{ctx.prefix}-rocksdb", main_topic)
            steps += [baseline, recovery]
            results["recovery_records_per_s"] = round(recovery.eps)
            results["recovery_per_record_records_per_s"] = round(baseline.eps)
        if "redis" not in skip:
            log("ours: Redis store")
            red, _ = step_ours(ctx, "redis", main_topic, expected, {"PORTSCAN_STORE": args.redis_url})
            steps.append(red)
            results["ours_redis_eps"] = round(red.eps)
        if "scale" not in skip:
            # Scale-out: 1 (the run above), 2 and 4 worker processes in one group, without standbys;
            # then 2 with one standby replica each, whose cost is what the standby takes from them.
            results["scaling_eps"] = {"1": round(rocks.eps)}
            for n in sorted({2, 4, args.scale_workers} - {1}):
                log(f"ours: {n} workers in one group, RocksDB store")
                scaled, _ = step_ours(
                    ctx,
                    f"rocksdb-{n}w",
                    main_topic,
                    expected,
                    {"PORTSCAN_STORE": "rocksdb://", "PORTSCAN_STANDBY_REPLICAS": "0"},
                    workers=n,
                )
                steps.append(scaled)
                results["scaling_eps"][str(n)] = round(scaled.eps)
            log("ours: 2 workers in one group, one standby replica each")
            standby, _ = step_ours(
                ctx,
                "rocksdb-2w-standby",
                main_topic,
                expected,
                {"PORTSCAN_STORE": "rocksdb://", "PORTSCAN_STANDBY_REPLICAS": "1"},
                workers=2,
            )
            steps.append(standby)
            without = results["scaling_eps"]["2"]
            results["standby_eps"] = round(standby.eps)
            results["standby_cost"] = round(1 - standby.eps / without, 3) if without else None
        # Our worker on unkeyed input, and the peers (Kafka Streams, Quix Streams) on the same topics.
        steps.extend(run_peers(ctx, args, skip, main_topic, expected, rocks, rss, results))
        results["ratio_vs_limit"] = round(rocks.eps / limit.eps, 3) if limit.eps else None
        if results.get("naive_faust_eps"):
            results["ratio_vs_naive"] = round(rocks.eps / results["naive_faust_eps"], 1)
        if "latency" not in skip:
            rate = args.latency_rate or rocks.eps / 2
            what = f"at {rate:,.0f} events/s" if args.latency_rate else "at half the rocksdb rate"
            lat = step_latency(ctx, rate, args.latency_seconds, args.seed + 1)
            results.update(
                early_alert_p50_ms=round(lat.p50_ms, 1),
                early_alert_p99_ms=round(lat.p99_ms, 1),
                early_alert_max_ms=round(lat.max_ms, 1),
                latency_rate_eps=round(lat.rate),
            )
            steps.append(
                Step(
                    f"latency: early alert {what}",
                    lat.windows,
                    args.latency_seconds,
                    lat.ok,
                    f"p50 {lat.p50_ms:.0f} ms, p99 {lat.p99_ms:.0f} ms, max {lat.max_ms:.0f} ms; " + lat.note,
                )
            )
            for engine in sorted(results.get("engines", {})):  # each engine at the same rate
                if engine == results.get("engine_auto"):
                    results["engines"][engine].update(early_alert_p99_ms=round(lat.p99_ms, 1))
                    continue
                other = step_latency(ctx, rate, args.latency_seconds, args.seed + 1, engine)
                results["engines"][engine].update(early_alert_p99_ms=round(other.p99_ms, 1))
                steps.append(
                    Step(
                        f"latency: early alert {what}, --engine {engine}",
                        other.windows,
                        args.latency_seconds,
                        other.ok,
                        f"p50 {other.p50_ms:.0f} ms, p99 {other.p99_ms:.0f} ms, max {other.max_ms:.0f} ms; "
                        + other.note,
                    )
                )
        if "memory" not in skip:
            mem, mem_rss = step_memory(ctx, args.keys)
            steps.append(mem)
            results["peak_rss_mb_1m_keys"] = round(mem_rss)
            results["keys"] = args.keys
            hostile, hostile_rss = step_memory_hostile(ctx, args.hostile_scanners, idle_rss_mb(ctx))
            steps.append(hostile)
            results["peak_rss_mb_hostile"] = round(hostile_rss)
            results["hostile_windows"] = args.hostile_scanners
        if "memory-bound" not in skip:
            bound_steps, results["memory_bound"] = step_memory_bound(
                ctx, args.flood_keys, args.flood_bound, args.flood_limit_mb, args.flood_baseline
            )
            steps.extend(bound_steps)
        results["checks_ok"] = all(s.ok for s in steps)
        results["steps"] = [
            {
                "name": s.name,
                "events": s.events,
                "seconds": round(s.seconds, 2),
                "eps": round(s.eps),
                "ok": s.ok,
                "note": s.note,
            }
            for s in steps
        ]
    finally:
        ctx.cleanup()
    print(table(steps, limit))
    print(json.dumps({k: v for k, v in results.items() if k != "steps"}, indent=2))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return 0 if results["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
