"""`iis-portscan worker` end to end: real broker, the worker as a subprocess, its topics read back.

Each test has its own app id and topics (from `unique_name`), its worker's state under `tmp_path`, and its
worker's log in `tmp_path/job.log`, printed (the tail) with a failing test. Workers are stopped with SIGTERM,
then SIGKILL after 30 s; every wait is a poll against a deadline.

What the tests pin:
- keyed input (RocksDB, repartition-free) and unkeyed input (router + internal topic) both end with the latest
  revision per AlertId equal to `replay` (core.offline.offline_alerts) over the valid events;
- a window's first alert is `early` (revision 1) and a `final` follows when the watermark closes it;
- bad input is dead-lettered exactly once each, with its reason, coordinates and payload;
- late events within the retention revise a closed window (`late`), older ones are `too-late`;
- an event far ahead of the wall clock is `future-time` and moves no watermark;
- `topics create` is idempotent and the alert topic is compacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from .workerkit import (
    BIN_MS,
    COMPUTER,
    SETTLE_S,
    SIP,
    STARTUP_AND_WORK_S,
    STEP_S,
    Job,
    Record,
    await_answer,
    event,
    expected_view,
    iso,
    jsonl,
    latest,
    now_ms,
    own_topics,
    payload_text,
    produce,
    recent_workload,
    revisions_by_id,
    schema_errors,
    send,
    values_of,
    view,
    view_diff,
)


def check_dead_letters(job: Job, got: list[Record], want: Mapping[str, tuple[str, int | None]]) -> None:
    """`want`: Payload text -> (Reason, RecordIndex); every dead letter sourced from the input topic."""
    letters = values_of(got)
    assert schema_errors(letters, "deadletter.schema.json") == []
    by_payload = {d["Payload"]: d for d in letters}
    assert len(by_payload) == len(letters), "a bad input was dead-lettered more than once"
    assert {p: (d["Reason"], d["RecordIndex"]) for p, d in by_payload.items()} == want
    for rec, d in zip(got, letters):
        assert d["SourceTopic"] == job.input_topic
        index = "-" if d["RecordIndex"] is None else str(d["RecordIndex"])
        assert rec.key == f"{job.input_topic}/{d['SourcePartition']}/{d['SourceOffset']}/{index}".encode()


# ------------------------------------------------------------------------------------------------ tests


def engine_args(engine: str) -> tuple[str, ...]:
    """`--engine ENGINE` for a test run with each engine; the native one is skipped where it is not built."""
    if engine == "native":
        from streams.core.native import native_problem

        problem = native_problem()
        if problem is not None:
            pytest.skip(problem)
    return ("--engine", engine)


def check_engine_logged(job: Job, engine: str) -> None:
    assert f"engine: {engine} (" in job.log.read_text(errors="replace"), "the worker did not say its engine"


@pytest.mark.parametrize("engine", ["python", "native"])
def test_keyed_input_rocksdb_equals_replay_and_dead_letters_bad_lines(
    job: Job, tmp_path: Path, engine: str
) -> None:
    """Keyed input through `iis-portscan produce`, RocksDB state: latest revisions == replay; every window
    alerts early (revision 1) and then final; the three bad lines are dead-lettered with their reasons.
    With each engine (core.native): the same answer and dead letters."""
    records = recent_workload(30_000, seed=11)
    no_cip = dict(records[100])
    del no_cip["cIP"]
    bad_lines = {
        b'{"TimeGenerated": "2026-11-28T10:00:00Z", "cIP": "203.0': ("invalid-json", "utf-8"),
        orjson.dumps(no_cip): ("missing-field", "utf-8"),
        b'\xff\xfe{"cIP": "203.0.113.9", "Computer": "WEB01"}': ("undecodable", "base64"),
    }
    lines = [orjson.dumps(r) for r in records]
    for at, line in zip((0, len(lines) // 2, len(lines)), bad_lines):
        lines.insert(at, line)
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(b"\n".join(lines) + b"\n")
    expected = expected_view(records)
    assert len(expected) >= 5, "the workload should hold several scans"

    env = job.env(input_keyed="true", partitions="4")
    job.cli("topics", "create", env=env)
    out = job.cli("produce", str(sample), env=env)
    assert f"{len(lines)} records" in out and "(3 sent unkeyed: invalid, or W3C directives)" in out, out

    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    args = ("--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"), *engine_args(engine))
    with job.worker(*args, env=env) as worker:

        def answered(got: list[Record]) -> bool:
            current = latest(values_of(got))
            return view(current.values()) == expected and all(a["Phase"] == "final" for a in current.values())

        try:
            alerts.poll_until(answered, STARTUP_AND_WORK_S, worker.check_alive, "final alerts == replay")
        except AssertionError as exc:
            got = view(latest(values_of(alerts.records)).values())
            raise AssertionError(f"{exc}\n{view_diff(got, expected)}") from None
        dlq.poll_until(lambda got: len(got) >= 3, 30, worker.check_alive, "3 dead letters")
        dlq.poll(SETTLE_S)
        alerts.poll(SETTLE_S)

    job.check_clean_stop(worker)
    check_engine_logged(job, engine)
    produced = values_of(alerts.records)
    assert schema_errors(produced, "alert.schema.json") == []
    assert view(latest(produced).values()) == expected
    final_of = latest(produced)
    for aid, revs in revisions_by_id(produced).items():
        assert [phase for _, phase in revs] == ["early", "final"], f"{aid}: revisions {revs}"
        # Revision = 2 x ConnectionsCount (+ 1 once closed): early at the count that crossed the threshold
        assert revs[0][0] % 2 == 0 and revs[0][0] < revs[1][0] == 2 * final_of[aid]["ConnectionsCount"] + 1

    want_dead = {payload_text(raw)[0]: (reason, None) for raw, (reason, _) in bad_lines.items()}
    check_dead_letters(job, dlq.records, want_dead)
    letters = values_of(dlq.records)
    assert {d["Reason"]: d["PayloadEncoding"] for d in letters} == dict(bad_lines.values())
    assert all(d["Key"] is None and d["KeyEncoding"] == "none" for d in letters)


def test_unkeyed_input_with_envelopes_repartitions_and_equals_replay(job: Job, tmp_path: Path) -> None:
    """Unkeyed input (router + internal topic), single records and `{"records": [...]}` envelopes: latest
    revisions == replay; the one bad record inside an envelope is dead-lettered with its RecordIndex."""
    records = recent_workload(20_000, seed=12, disorder_ms=30_000)
    messages: list[tuple[bytes | None, bytes]] = []
    valid: list[dict[str, Any]] = []
    bad_envelope = b""
    i = n_envelopes = 0
    while i < len(records):
        if i % 97 == 0 and i + 5 <= len(records):
            group = [dict(r) for r in records[i : i + 5]]
            if n_envelopes == 3:
                del group[2]["sIP"]  # the bad record: index 2 of this envelope
                bad_envelope = orjson.dumps({"records": group})
                messages.append((None, bad_envelope))
                valid += group[:2] + group[3:]
            else:
                messages.append((None, orjson.dumps({"records": group})))
                valid += group
            n_envelopes += 1
            i += 5
        else:
            messages.append((None, orjson.dumps(records[i])))
            valid.append(records[i])
            i += 1
    assert n_envelopes > 100 and bad_envelope
    expected = expected_view(valid)
    assert len(expected) >= 5

    env = job.env(input_keyed="false", partitions="4")
    job.cli("topics", "create", env=env)
    produce(job.brokers, job.input_topic, messages)

    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    args = ("--input-keyed", "false", "--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"))
    with job.worker(*args, env=env) as worker:
        await_answer(alerts, expected, worker.check_alive, "alerts == replay", closed=False)
        dlq.poll_until(lambda got: len(got) >= 1, 30, worker.check_alive, "1 dead letter")
        dlq.poll(SETTLE_S)

    job.check_clean_stop(worker)
    assert schema_errors(values_of(alerts.records), "alert.schema.json") == []
    check_dead_letters(job, dlq.records, {bad_envelope.decode(): ("missing-field", 2)})
    (letter,) = values_of(dlq.records)
    assert "sIP" in letter["Detail"] and letter["Key"] is None


def test_memory_store_equals_replay(job: Job, tmp_path: Path, kafka_admin: AdminClient) -> None:
    """`--store memory://`: a short keyed run ends with the latest revisions equal to replay."""
    records = recent_workload(8_000, seed=13, scan_share=0.2, benign_clients=1_000)
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(jsonl(records))
    expected = expected_view(records)
    assert len(expected) >= 3

    env = job.env(input_keyed="true", partitions="2", store="memory://")
    job.cli("topics", "create", env=env)
    job.cli("produce", str(sample), env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    args = ("--store", "memory://", "--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"))
    with job.worker(*args, env=env) as worker:
        alerts.poll_until(
            lambda got: view(latest(values_of(got)).values()) == expected,
            STARTUP_AND_WORK_S,
            worker.check_alive,
            "alerts == replay",
        )
        dlq.poll(SETTLE_S)
    job.check_clean_stop(worker)
    assert view(latest(values_of(alerts.records)).values()) == expected
    assert schema_errors(values_of(alerts.records), "alert.schema.json") == []
    assert dlq.records == []
    assert not own_topics(kafka_admin, job.changelog_topic), "memory:// needs no changelog"


def test_late_event_revises_closed_window_and_too_late_is_dead_lettered(job: Job, tmp_path: Path) -> None:
    """No idle advancement, retention 1h, one partition: scan in bin B (early), a later event closes B
    (final), a late event for B gives a `late` revision counting it; once the watermark is more than the
    retention past B, another event for B is dead-lettered `too-late` and B gets no new revision."""
    b = (now_ms() - 6 * 3_600_000) // BIN_MS * BIN_MS
    scanner, other = "198.51.100.7", "198.51.100.8"
    env = job.env(input_keyed="true", partitions="1")
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)

    def b_revisions(got: list[Record]) -> list[dict[str, Any]]:
        return [a for a in values_of(got) if a["cIP"] == scanner and a["TimeGenerated"] == iso(b)]

    args = ("--idle-timeout", "0", "--retention", "1h", "--data-dir", str(tmp_path / "data"))
    with job.worker(*args, env=env) as worker:
        # 1. 35 ports in B: early.
        send(job, [event(b + 60_000 + i * 1000, scanner, 1000 + i) for i in range(35)])
        alerts.poll_until(lambda got: len(b_revisions(got)) >= 1, STEP_S, worker.check_alive, "early for B")
        # 2. An event at B + 13m: watermark B + 11m closes B: final, 35 connections.
        send(job, [event(b + 13 * 60_000, other, 443)])
        alerts.poll_until(
            lambda got: any(a["Phase"] == "final" for a in b_revisions(got)),
            STEP_S,
            worker.check_alive,
            "final",
        )
        # 3. A late event for B, within the retention: a late revision with 36 connections.
        late = event(b + 5 * 60_000, scanner, 2000)
        send(job, [late])
        alerts.poll_until(
            lambda got: any(a["Phase"] == "late" for a in b_revisions(got)),
            STEP_S,
            worker.check_alive,
            "late",
        )
        # 4. A scan in bin C = B + 80m: watermark past B + retention + bin (B expires); C's early proves it.
        c = b + 80 * 60_000
        send(job, [event(c + i * 1000, other, 3000 + i) for i in range(30)])
        alerts.poll_until(
            lambda got: any(a["TimeGenerated"] == iso(c) for a in values_of(got)),
            STEP_S,
            worker.check_alive,
            "early for C",
        )
        # 5. Another event for B: too late.
        too_late = event(b + 6 * 60_000, scanner, 2001)
        send(job, [too_late])
        dlq.poll_until(lambda got: len(got) >= 1, STEP_S, worker.check_alive, "too-late dead letter")
        alerts.poll(SETTLE_S)
        dlq.poll(SETTLE_S)

    job.check_clean_stop(worker)
    revs = b_revisions(alerts.records)
    assert [a["Phase"] for a in revs] == ["early", "final", "late"]
    assert [a["ConnectionsCount"] for a in revs[1:]] == [35, 36]
    assert [a["Revision"] for a in revs] == [2 * revs[0]["ConnectionsCount"], 71, 73]  # 2 x count + closed
    assert revs[2]["portCount"] == revs[2]["DistinctPortCount"] == 36 and 2000 in revs[2]["set_sPort"]
    assert revs[2]["LastSeen"] == late["TimeGenerated"]
    assert len({a["AlertId"] for a in revs}) == 1
    assert schema_errors(values_of(alerts.records), "alert.schema.json") == []
    check_dead_letters(job, dlq.records, {orjson.dumps(too_late).decode(): ("too-late", None)})
    (letter,) = values_of(dlq.records)
    assert letter["Key"] == f"{scanner}|{COMPUTER}|{SIP}" and letter["KeyEncoding"] == "utf-8"


def test_future_event_is_dead_lettered_and_closes_nothing(job: Job, tmp_path: Path) -> None:
    """An event a day ahead of the wall clock (default --max-skew 15m) is dead-lettered `future-time` and does
    not move the watermark: the open window B stays open until an ordinary event closes it."""
    b = (now_ms() - 3_600_000) // BIN_MS * BIN_MS
    scanner = "198.51.100.20"
    env = job.env(input_keyed="true", partitions="1")
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)

    def b_phases(got: list[Record]) -> list[tuple[int, str]]:
        return [(a["Revision"] % 2, a["Phase"]) for a in values_of(got) if a["TimeGenerated"] == iso(b)]

    args = ("--idle-timeout", "0", "--data-dir", str(tmp_path / "data"))
    with job.worker(*args, env=env) as worker:
        send(job, [event(b + i * 2000, scanner, 5000 + i) for i in range(35)])
        alerts.poll_until(lambda got: len(b_phases(got)) >= 1, STEP_S, worker.check_alive, "early for B")
        future = event(now_ms() + 86_400_000, "198.51.100.21", 80)
        send(job, [future])
        dlq.poll_until(lambda got: len(got) >= 1, STEP_S, worker.check_alive, "future-time dead letter")
        alerts.poll(SETTLE_S)
        assert b_phases(alerts.records) == [(0, "early")], "the future event closed window B"
        # An ordinary event at B + 13m moves the watermark to B + 11m: now B closes.
        send(job, [event(b + 13 * 60_000, "198.51.100.22", 443)])
        alerts.poll_until(lambda got: len(b_phases(got)) >= 2, STEP_S, worker.check_alive, "final for B")
        alerts.poll(SETTLE_S)
        dlq.poll(SETTLE_S)

    job.check_clean_stop(worker)
    assert b_phases(alerts.records) == [(0, "early"), (1, "final")]  # Revision is odd once closed
    final = values_of(alerts.records)[-1]
    assert final["ConnectionsCount"] == 35 and final["Phase"] == "final"
    assert {a["TimeGenerated"] for a in values_of(alerts.records)} == {iso(b)}
    check_dead_letters(job, dlq.records, {orjson.dumps(future).decode(): ("future-time", None)})
    assert "ahead of the wall clock" in values_of(dlq.records)[0]["Detail"]


def test_topics_create_is_idempotent_and_alert_topic_is_compacted(job: Job, kafka_admin: AdminClient) -> None:
    """`topics create` twice: both succeed, the same topics with the same partitions and configs; the alert
    topic (and the changelog) is compacted."""
    env = job.env(partitions="3")  # unkeyed, RocksDB: input, alerts, dlq, repartition, changelog
    job.cli("topics", "create", env=env)
    mine = [job.input_topic, job.alert_topic, job.dlq_topic, job.repartition_topic, job.changelog_topic]

    def snapshot() -> tuple[dict[str, int], dict[str, dict[str, str]]]:
        metadata = kafka_admin.list_topics(timeout=10)
        counts = {t: len(m.partitions) for t, m in metadata.topics.items() if t.startswith(job.name)}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in mine]
        futures = kafka_admin.describe_configs(resources, request_timeout=15)
        configs = {
            res.name: {k: e.value for k, e in fut.result(timeout=15).items()} for res, fut in futures.items()
        }
        return counts, configs

    counts, configs = snapshot()
    # faust's leader-assignor topic has one partition; `topics create` makes it too (managed clusters)
    assert counts == {**dict.fromkeys(mine, 3), f"{job.name}-__assignor-__leader": 1}
    job.cli("topics", "create", env=env)
    assert snapshot() == (counts, configs)
    assert configs[job.alert_topic]["cleanup.policy"] == "compact"
    assert configs[job.changelog_topic]["cleanup.policy"] == "compact"
    assert configs[job.input_topic]["cleanup.policy"] == "delete"
    assert configs[job.dlq_topic]["cleanup.policy"] == "delete"
    assert int(configs[job.dlq_topic]["retention.ms"]) == 7 * 86_400_000


@pytest.mark.parametrize(
    ("store", "engine"), [("rocksdb", "python"), ("rocksdb", "native"), ("redis", "auto")]
)
def test_a_tiny_max_open_windows_equals_replay(
    job: Job, tmp_path: Path, store: str, engine: str, request: Any
) -> None:
    """`--max-open-windows 20` over a thousand clients: windows are spilled to the store (RocksDB with its
    changelog, or Redis), read back when their client returns and closed from the store, and the latest
    revisions still equal replay, with each engine."""
    records = recent_workload(8_000, seed=17, scan_share=0.2, benign_clients=1_000)
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(jsonl(records))
    expected = expected_view(records)
    assert len(expected) >= 3
    url = request.getfixturevalue("redis_url") if store == "redis" else "rocksdb://"
    env = job.env(input_keyed="true", partitions="2", store=url)
    job.cli("topics", "create", env=env)
    job.cli("produce", str(sample), env=env)
    alerts = job.reader(job.alert_topic)
    args = ("--max-open-windows", "20", "--idle-timeout", "3s", "--data-dir", str(tmp_path / "data"))
    args += engine_args(engine)
    try:
        with job.worker(*args, env=env) as worker:
            await_answer(alerts, expected, worker.check_alive, "alerts == replay", closed=False)
        job.check_clean_stop(worker)
    finally:
        if store == "redis":
            import redis

            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"iis-portscan:{job.name}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    assert view(latest(values_of(alerts.records)).values()) == expected
