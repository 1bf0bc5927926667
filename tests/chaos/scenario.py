"""A chaos scenario from a seed: the data, the partition layout, the topology and store, and the schedule of
faults, all drawn from one `random.Random(seed)`, so that a seed names one scenario exactly (its event
times are placed relative to the wall clock of the run, the same offsets every time).

Pure: no broker, no worker. `tests/chaos/kit.py` runs a scenario against the real services and checks it;
`messages` and `expected` say what the input is and what `replay` answers over it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core.alerts import RULE_COLUMNS
from streams.core.offline import offline_alerts
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.shippers import MessageReader
from streams.core.timefmt import format_iso_ms
from streams.core.windows import routing_key
from streams.io.sample import Workload, generate

BIN_MS = 600_000
DAY_MS = 86_400_000
COMPUTER = "WEB09.contoso.local"  # --computer: the host of bare W3C lines, which name none
COMPARED = (*RULE_COLUMNS, "DistinctPortCount", "FirstSeen", "LastSeen")

AGES = ("today", "last-week", "last-year")
ORDERS = ("ordered", "shuffled", "bursts")
STORES = ("rocksdb", "rocksdb-standby", "redis")
SHAPES = ("w3ciislog", "mixed")
MOVES = ("sigkill", "sigterm", "join", "rebalance", "broker-freeze", "broker-restart", "redis-restart")
BROKER_MOVES = ("broker-freeze", "broker-restart")
SHIPPERS = (
    "w3ciislog",
    "records",
    "filebeat",
    "fluentbit",
    "vector",
    "cribl",
    "logstash",
    "ecs-envelope",
    "ecs",
    "nxlog",
    "raw",
)
GARBAGE = (
    "invalid-json",
    "undecodable",
    "not-an-object",
    "missing-cip",
    "bad-time",
    "long-key",
    "raw-short",
    "future",
    "directive",
)


@dataclass(frozen=True)
class Move:
    """One fault: strikes while chunk `chunk` is fed, once the group has committed `at` of that chunk.

    `worker`: which running worker (index into the running ones, modulo their number) for sigkill and
    sigterm; `restart`: start that host again at once (same data dir), else it stays down until the end.
    `seconds`: how long a freeze or an outage lasts."""

    kind: str
    chunk: int
    at: float
    worker: int = 0
    restart: bool = True
    seconds: float = 0.0

    def describe(self) -> str:
        extra = ""
        if self.kind in ("sigkill", "sigterm"):
            extra = f" worker#{self.worker}{' +restart' if self.restart else ' (stays down)'}"
        elif self.seconds:
            extra = f" {self.seconds:.0f}s"
        return f"{self.kind}{extra} @chunk{self.chunk}:{self.at:.0%}"


@dataclass(frozen=True)
class Scenario:
    seed: int
    partitions: int
    keyed: bool
    store: str
    hosts: int
    age: str
    order: str
    shapes: str
    events: int
    scan_share: float
    garbage: int
    empty: tuple[int, ...]  # input partitions that receive no event (unkeyed: nothing; keyed: groups dropped)
    late: tuple[int, ...]  # input partitions that receive data only in the last chunk
    garbage_in_empty: bool  # the empty partitions get some of the garbage (records, but no event)
    chunks: int
    pauses: tuple[int, ...]  # after these chunks: wait for the group to commit all, then > idle timeout
    moves: tuple[Move, ...] = field(default_factory=tuple)

    @property
    def broker_faults(self) -> bool:
        return any(m.kind in BROKER_MOVES for m in self.moves)

    def describe(self) -> str:
        return (
            f"seed={self.seed}: {self.partitions} partitions, "
            f"{'keyed' if self.keyed else 'unkeyed (router)'}, {self.store}, {self.hosts} host(s); "
            f"data {self.events} events ({self.scan_share:.0%} scans) {self.age} {self.order} "
            f"in {self.chunks} chunks, shapes {self.shapes}, {self.garbage} garbage"
            f"{' (some in the empty partitions)' if self.garbage_in_empty and self.empty else ''}; "
            f"empty partitions {list(self.empty)}, late partitions {list(self.late)}, "
            f"pauses after chunks {list(self.pauses)}; "
            f"moves: {', '.join(m.describe() for m in self.moves) or 'none'}"
        )

    def dimensions(self) -> set[str]:
        """What this scenario exercises (the fixed seeds of `make test` must cover every one)."""
        dims = {
            f"partitions={'1' if self.partitions == 1 else '2-4' if self.partitions <= 4 else '5-8'}",
            "keyed" if self.keyed else "router",
            f"store={self.store}",
            f"hosts={self.hosts}",
            f"age={self.age}",
            f"order={self.order}",
            f"shapes={self.shapes}",
        }
        if self.garbage:
            dims.add("garbage")
        if self.empty:
            dims.add("empty-partitions")
        if self.late:
            dims.add("late-partitions")
        dims.update(f"move={m.kind}" for m in self.moves)
        running = self.hosts  # as kit.Run plays the moves: a host stays down only if another runs
        for m in self.moves:
            if m.kind == "join":
                running += 1
            elif m.kind in ("sigkill", "sigterm") and not m.restart and running > 1:
                running -= 1
                dims.add("move=host-stays-down")
        return dims


ALL_DIMENSIONS = (
    {"partitions=1", "partitions=2-4", "partitions=5-8", "keyed", "router", "garbage"}
    | {f"store={s}" for s in STORES}
    | {f"hosts={h}" for h in (1, 2, 3)}
    | {f"age={a}" for a in AGES}
    | {f"order={o}" for o in ORDERS}
    | {f"shapes={s}" for s in SHAPES}
    | {"empty-partitions", "late-partitions", "move=host-stays-down"}
    | {f"move={m}" for m in MOVES}
)


def make_scenario(seed: int) -> Scenario:
    """The scenario of `seed` (deterministic)."""
    rng = random.Random(seed)
    partitions = rng.choice((1, 2, 3, 4, 4, 6, 8, 8))
    keyed = rng.random() < 0.5
    store = rng.choice(STORES)
    hosts = rng.choice((1, 1, 2, 2, 3))
    age = rng.choice(("today", "today", "last-week", "last-year"))
    order = rng.choice(ORDERS)
    shapes = rng.choice(("w3ciislog", "mixed", "mixed"))
    events = rng.choice((2_000, 4_000, 6_000))
    scan_share = rng.choice((0.15, 0.25, 0.35))
    garbage = rng.choice((0, 6, 20))
    empty: tuple[int, ...] = ()
    late: tuple[int, ...] = ()
    if partitions > 1 and rng.random() < 0.6:
        empty = tuple(sorted(rng.sample(range(partitions), rng.randint(1, partitions - 1))))
    rest = [p for p in range(partitions) if p not in empty]
    if len(rest) > 1 and rng.random() < 0.4:
        late = tuple(sorted(rng.sample(rest, rng.randint(1, len(rest) - 1))))
    garbage_in_empty = bool(garbage and empty and rng.random() < 0.5)
    chunks = rng.randint(2, 4)
    pauses: tuple[int, ...] = ()
    if order == "bursts":
        pauses = tuple(sorted(rng.sample(range(chunks - 1), rng.randint(1, chunks - 1))))
    moves: list[Move] = []
    kinds = ["sigkill", "sigterm", "join", "rebalance"]
    if store == "redis":
        kinds.append("redis-restart")
    broker_fault = rng.random() < 0.15
    for _ in range(rng.choice((0, 1, 2, 2, 3))):
        kind = rng.choice(kinds)
        moves.append(
            Move(
                kind,
                chunk=rng.randrange(chunks),
                at=rng.choice((0.0, 0.3, 0.6, 1.0)),
                worker=rng.randrange(3),
                restart=rng.random() < 0.6,
                seconds=rng.choice((1.0, 3.0)) if kind == "redis-restart" else 0.0,
            )
        )
    if broker_fault:
        kind = rng.choice(BROKER_MOVES)
        seconds = rng.choice((4.0, 10.0)) if kind == "broker-freeze" else rng.choice((2.0, 5.0))
        moves.append(Move(kind, chunk=rng.randrange(chunks), at=rng.choice((0.3, 0.6)), seconds=seconds))
    moves.sort(key=lambda m: (m.chunk, m.at))
    return Scenario(
        seed=seed,
        partitions=partitions,
        keyed=keyed,
        store=store,
        hosts=hosts,
        age=age,
        order=order,
        shapes=shapes,
        events=events,
        scan_share=scan_share,
        garbage=garbage,
        empty=empty,
        late=late,
        garbage_in_empty=garbage_in_empty,
        chunks=chunks,
        pauses=pauses,
        moves=tuple(moves),
    )


# ------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Message:
    """One input message: its bytes, its key (None: unkeyed), the input partition it goes to, the chunk
    it is fed in, and what `replay` reads in it (`kind`: event, bad, future or directive)."""

    value: bytes
    key: bytes | None
    partition: int
    chunk: int
    kind: str
    reason: str | None = None  # the dead letter's Reason for bad and future messages


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java's murmur2, toPositive, modulo): where `produce` and the router
    put a key, so that the test knows a keyed message's partition before it is sent."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(key: bytes) -> int:
    """Java's Utils.murmur2 (Kafka), as an unsigned 32-bit value."""
    m, seed = 0x5BD1E995, 0x9747B28C
    length = len(key)
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length % 4, length - length % 4
    if tail >= 3:
        h ^= key[rest + 2] << 16
    if tail >= 2:
        h ^= key[rest + 1] << 8
    if tail >= 1:
        h ^= key[rest]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def start_ms(age: str, now_ms: int) -> int:
    """Where the data begins: 4 h before now (on a bin edge), a week earlier, or a year earlier. Recent
    data ends an hour before now, so no valid event is ahead of the worker's clock."""
    today = now_ms // BIN_MS * BIN_MS - 4 * 3_600_000
    return today - {"today": 0, "last-week": 7 * DAY_MS, "last-year": 365 * DAY_MS}[age]


def _w3c_line(r: dict[str, Any]) -> str:
    """A W3CIISLog record as IIS wrote its line (IIS's default W3C fields, second resolution)."""
    t = r["TimeGenerated"]
    date, clock = t[:10], t[11:19]
    fields = (
        date, clock, r["sIP"], r["csMethod"], r["csUriStem"], r["csUriQuery"], str(r["sPort"]),
        r["csUserName"], r["cIP"], r["csUserAgent"], r["csReferer"], r["scStatus"], r["scSubStatus"],
        r["scWin32Status"], str(r["TimeTaken"]),
    )  # fmt: skip
    return " ".join(fields)


def _shaped(r: dict[str, Any], shape: str, offset: int) -> bytes:
    """The record as one shipper puts it on Kafka (see tests/data/shippers/README.md for the shapes)."""
    if shape == "w3ciislog":
        return orjson.dumps(r)
    if shape == "records":
        return orjson.dumps({"records": [r]})
    line = _w3c_line(r)
    host = r["Computer"]
    site = r["sSiteName"]
    win_path = f"C:\\inetpub\\logs\\LogFiles\\{site}\\u_ex{r['TimeGenerated'][2:4]}0101.log"
    read = r["TimeGenerated"][:23] + "Z"
    doc: dict[str, Any]
    if shape == "raw":
        return line.encode()
    if shape == "filebeat":
        doc = {
            "@timestamp": read,
            "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.17.0"},
            "log": {"offset": offset, "file": {"path": win_path}},
            "message": line,
            "event": {"dataset": "iis.access", "module": "iis"},
            "host": {"name": host},
            "agent": {"type": "filebeat", "version": "8.17.0"},
        }
    elif shape == "fluentbit":
        doc = {"@timestamp": offset / 1000.0, "log": line, "file": win_path, "hostname": host}
    elif shape == "vector":
        doc = {"file": win_path, "host": host, "message": line, "source_type": "file", "timestamp": read}
    elif shape == "cribl":
        doc = {"_raw": line, "_time": offset / 1000.0, "host": host, "source": win_path}
    elif shape == "logstash":
        doc = {
            "@timestamp": read,
            "@version": "1",
            "event": {"original": line + "\r"},
            "host": {"name": host},
            "log": {"file": {"path": win_path.replace("\\", "/")}},
            "message": line + "\r",
        }
    elif shape == "ecs-envelope":
        doc = {"@timestamp": read, "event.original": line, "host.name": host, "log.file.path": win_path}
    elif shape == "ecs":
        doc = {
            "@timestamp": read,
            "source": {"ip": r["cIP"], "address": r["cIP"]},
            "destination": {"ip": r["sIP"], "address": r["sIP"], "port": r["sPort"]},
            "http": {"request": {"method": r["csMethod"]}, "response": {"status_code": int(r["scStatus"])}},
            "url": {"path": r["csUriStem"], "original": r["csUriStem"]},
            "iis": {"access": {"sub_status": int(r["scSubStatus"]), "win32_status": int(r["scWin32Status"])}},
            "host": {"name": host},
            "log": {"file": {"path": win_path}},
            "event": {"dataset": "iis.access", "original": line},
        }
        if r["csUriQuery"] != "-":
            doc["url"]["query"] = r["csUriQuery"]
        if r["csUserName"] != "-":
            doc["user"] = {"name": r["csUserName"]}
        if r["csUserAgent"] != "-":
            doc["user_agent"] = {"original": r["csUserAgent"].replace("+", " ")}
    elif shape == "nxlog":
        names = (
            "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
            "cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
        ).split()
        doc = {k: None if v == "-" else v for k, v in zip(names, line.split(" "), strict=True)}
        doc.update({"EventTime": read.replace("T", " ")[:19], "Hostname": host, "FileName": win_path})
    else:
        raise ValueError(shape)
    return orjson.dumps(doc)


def _garbage(kind: str, rng: random.Random, template: dict[str, Any], now_ms: int) -> bytes:
    """One bad message (or a directive, which is skipped, or an event from the future)."""
    if kind == "invalid-json":
        return b'{"TimeGenerated": "2026-01-01T00:00:0' + str(rng.randrange(10)).encode()
    if kind == "undecodable":
        return b"\xff\xfe garbage \x80" + bytes([rng.randrange(128, 256)])
    if kind == "not-an-object":
        return orjson.dumps(rng.randrange(100))  # JSON, but a number
    if kind == "missing-cip":
        return orjson.dumps({k: v for k, v in template.items() if k != "cIP"})
    if kind == "bad-time":
        return orjson.dumps({**template, "TimeGenerated": f"yesterday at {rng.randrange(24)}"})
    if kind == "long-key":
        return orjson.dumps({**template, "cIP": "9" * 300 + str(rng.randrange(1000))})
    if kind == "raw-short":
        return f"2026-01-01 00:00:{rng.randrange(60):02d} 10.0.0.11 GET /".encode()
    if kind == "future":
        ahead = 2 * DAY_MS + rng.randrange(DAY_MS)  # far beyond --max-skew
        return orjson.dumps({**template, "TimeGenerated": format_iso_ms(now_ms + ahead)})
    if kind == "directive":
        return b"#Software: Microsoft Internet Information Services 10.0"
    raise ValueError(kind)


def messages(s: Scenario, now_ms: int) -> list[Message]:
    """The scenario's input, in the order it is fed (chunk by chunk), each with its partition."""
    rng = random.Random(s.seed * 7919 + 1)
    workload = Workload(
        events=s.events,
        seed=s.seed,
        start_ms=start_ms(s.age, now_ms),
        span_ms=3 * 3_600_000,
        benign_clients=300,
        scan_share=s.scan_share,
        min_scan_ports=30,
        max_scan_ports=300,
        disorder_ms=120_000 if s.order == "bursts" else 0,
    )
    records = list(generate(workload))
    if s.order == "shuffled":
        rng.shuffle(records)
    reader = MessageReader(computer=COMPUTER)
    normal = [p for p in range(s.partitions) if p not in s.empty and p not in s.late]
    out: list[tuple[int, Message]] = []  # (position in the feed, message)
    last = s.chunks - 1
    for i, record in enumerate(records):
        shape = "w3ciislog" if s.shapes == "w3ciislog" else rng.choice(SHIPPERS)
        value = _shaped(record, shape, i)
        ((_, event),) = reader.read(value)  # what replay reads in it
        assert isinstance(event, IISEvent), f"{shape}: {event}"
        chunk = i * s.chunks // len(records)
        if s.keyed:
            key: bytes | None = routing_key(event)
            assert key is not None
            partition = murmur2_partition(key, s.partitions)
            if partition in s.empty:
                continue  # the group's events go nowhere (keyed: a partition no host writes to)
            if partition in s.late:
                chunk = last
        else:
            key = None
            partition = rng.choice(normal + (list(s.late) if chunk == last else []))
        held = partition in s.late  # a late partition's events come at the end of the last chunk
        out.append((len(records) + i if held else i, Message(value, key, partition, chunk, "event")))
    template = records[0]
    for j in range(s.garbage):
        kind = GARBAGE[j % len(GARBAGE)] if j < len(GARBAGE) else rng.choice(GARBAGE)
        value = _garbage(kind, rng, template, now_ms)
        results = reader.read(value)
        chunk = rng.randrange(s.chunks)
        targets = normal + (list(s.late) if chunk == last else [])
        if s.garbage_in_empty and rng.random() < 0.5:
            targets = list(s.empty)
        partition = rng.choice(targets)
        if kind == "future":
            msg = Message(value, None, partition, chunk, "future", Reason.FUTURE_TIME.value)
        elif not results:
            msg = Message(value, None, partition, chunk, "directive")
        else:
            ((_, result),) = results
            assert isinstance(result, ParseError), f"garbage {kind} read as an event"
            msg = Message(value, None, partition, chunk, "bad", result.reason.value)
        position = rng.randrange(len(records)) + (len(records) if chunk == last else 0)
        out.append((position, msg))
    # Stable: the chunk first, then the position in the feed (held-back messages at the end of theirs).
    out.sort(key=lambda pm: (pm[1].chunk, pm[0]))
    return [m for _, m in out]


def expected(msgs: list[Message]) -> dict[str, dict[str, Any]]:
    """What `replay` answers over the events of the input (AlertId -> compared columns)."""
    reader = MessageReader(computer=COMPUTER)
    events: list[IISEvent] = []
    for m in msgs:
        if m.kind == "event":
            events.extend(r for _, r in reader.read(m.value) if isinstance(r, IISEvent))
    return {a["AlertId"]: {k: a[k] for k in COMPARED} for a in offline_alerts(events)}


def groups_of(msgs: list[Message]) -> dict[tuple[str, str, str], Counter[int]]:
    """(cIP, Computer, sIP) -> how many of its events went to each input partition (for failure notes)."""
    reader = MessageReader(computer=COMPUTER)
    out: dict[tuple[str, str, str], Counter[int]] = {}
    for m in msgs:
        if m.kind == "event":
            for _, r in reader.read(m.value):
                if isinstance(r, IISEvent):
                    out.setdefault((r.cIP, r.Computer, r.sIP), Counter())[m.partition] += 1
    return out


def fresh_base() -> int:
    """A seed base for a run of fresh seeds (the clock's seconds)."""
    return int(time.time())


def cost_s(s: Scenario) -> float:
    """A rough wall time of a scenario on a quiet 2-core host (for choosing the fixed seeds)."""
    seconds = 25.0 + s.events / 1_000 + 6.0 * len(s.pauses) + 4.0 * s.hosts
    for m in s.moves:
        seconds += {"sigkill": 10.0, "sigterm": 8.0, "join": 8.0, "rebalance": 12.0}.get(m.kind, 12.0)
        seconds += m.seconds
    return seconds + (20.0 if s.broker_faults else 0.0)


def pick_seeds(candidates: range, budget_s: float) -> list[int]:
    """Greedy: seeds that cover every dimension of ALL_DIMENSIONS, cheapest new coverage first."""
    scenarios = [make_scenario(seed) for seed in candidates]
    chosen: list[int] = []
    covered: set[str] = set()
    while not ALL_DIMENSIONS <= covered:
        best = max(scenarios, key=lambda s: len(s.dimensions() - covered) / cost_s(s))
        if not best.dimensions() - covered:
            break
        chosen.append(best.seed)
        covered |= best.dimensions()
    total = sum(cost_s(make_scenario(seed)) for seed in chosen)
    assert total <= budget_s, f"{chosen} would take about {total:.0f}s"
    return sorted(chosen)


if __name__ == "__main__":  # python -m tests.chaos.scenario SEED...: print the scenarios
    import sys

    for arg in sys.argv[1:]:
        print(make_scenario(int(arg)).describe())
