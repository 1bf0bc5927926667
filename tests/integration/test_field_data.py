"""`iis-portscan worker` against data seen in the field: backfills, garbage, hostile values, spoofed headers.

Same harness as test_worker.py (workerkit's Job, readers and views; its workload and event helpers): each
test has its own app id and topics, its worker's state under `tmp_path` and its log in `tmp_path/job.log`
(the tail is printed with a failing test); every wait is a poll against a deadline within the test's budget.

What the tests pin (issue 12):
- event time only: a 2022 backfill produced after the worker sat idle, in chunks separated by pauses longer
  than the idle timeout, is processed, not dead-lettered `too-late`; once input stops every window is closed;
- bad input of every kind is dead-lettered exactly once per bad record, never stops the worker; a big
  payload's dead letter keeps its first 64 KiB with the original length and SHA-256;
- a scanner's huge, unique values are cut to --max-value-bytes (TruncatedSets) and its alert stays under
  --max-record-bytes, with exact counts, as `replay` computes it;
- src-* position headers on keyed input are ignored: a producer cannot make the worker skip real events;
- --app-id is validated by the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.timefmt import parse_iso_ms
from streams.io.sample import Workload, generate
from streams.kafka.messages import H_INDEX, H_OFFSET, H_PARTITION, H_TOPIC

from .workerkit import (
    BIN_MS,
    CLOSED,
    COMPARED,
    COMPUTER,
    SETTLE_S,
    SIP,
    STARTUP_AND_WORK_S,
    Job,
    Record,
    await_answer,
    check_alive_and_clean,
    describe_dead,
    event,
    expected_view,
    keyed,
    latest,
    no_dead_letters,
    now_ms,
    phases,
    produce,
    recent_workload,
    schema_errors,
    send,
    values_of,
    view,
    wait_for_log,
    watchdog,
)

MAX_RECORD_BYTES = 900_000  # --max-record-bytes default: changelog records and dead letters
DEFAULT_MAX_ALERT_BYTES = 32_768  # --max-alert-bytes default
MAX_VALUE_BYTES = 1024  # --max-value-bytes default: every string kept in a set
DLQ_PAYLOAD_BYTES = 65_536  # a dead letter keeps at most this much of the payload
TOMBSTONE = "<tombstone>"  # identity of a message without a value (see payload_id)


# ---------------------------------------------------------------------------------------------- helpers


def payload_id(letter: dict[str, Any]) -> str:
    """Which input a dead letter is about: the SHA-256 of its whole payload (PayloadSha256, or computed
    from Payload where the field is missing), TOMBSTONE for a message without a value."""
    if letter.get("PayloadEncoding") == "none" or letter.get("Payload") is None:
        return TOMBSTONE
    if isinstance(letter.get("PayloadSha256"), str):
        return str(letter["PayloadSha256"])
    text: str = letter["Payload"]
    raw = base64.b64decode(text) if letter["PayloadEncoding"] == "base64" else text.encode()
    return hashlib.sha256(raw).hexdigest()


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.slow
def test_backfill_after_idle_worker_equals_replay(job: Job, tmp_path: Path) -> None:
    """A worker idle for longer than --idle-timeout (2s), then a 2022 backfill in 3 event-time-ordered chunks
    with pauses longer than the idle timeout: nothing is dead-lettered (the idle watermark never runs past
    the events' own time), each chunk's windows close during the pause after it, and the latest revisions
    equal replay, all final or late once input stops."""
    start = parse_iso_ms("2022-06-01T00:00:00Z")
    assert start is not None
    records = list(
        generate(
            Workload(
                events=4_500,
                seed=32,
                start_ms=start,
                span_ms=3 * 3_600_000,
                benign_clients=800,
                scan_share=0.25,
            )
        )
    )
    n = len(records)
    cuts = [0, n // 3, 2 * n // 3, n]
    chunks = [records[a:b] for a, b in itertools.pairwise(cuts)]
    expected_after = [expected_view(records[:b]) for b in cuts[1:]]
    assert len(expected_after[-1]) >= 5, "the workload should hold several scans"
    assert 0 < len(expected_after[0]) < len(expected_after[1]) < len(expected_after[2])

    env = job.env(idle_timeout="2s", partitions="4")  # default topology: unkeyed, router + repartition
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    with job.worker("--data-dir", str(tmp_path / "data"), env=env) as worker:
        # Up (faust logs "[^Worker]: Ready" once partitions are assigned and state recovered), then idle for
        # three idle timeouts: idle advancement has had every chance to run before the first event.
        wait_for_log(job, worker, r"\[\^Worker\]: Ready", 1, STARTUP_AND_WORK_S)
        time.sleep(6.0)
        for i, chunk in enumerate(chunks):
            produce(job.brokers, job.input_topic, [(None, orjson.dumps(r)) for r in chunk])
            produced_at = time.monotonic()
            # Closed during the pause: every window of the events so far, by the idle timeout.
            await_answer(
                alerts,
                expected_after[i],
                watchdog(job, worker),
                f"chunk {i + 1}: alerts == replay, closed",
                dlq=dlq,
            )
            time.sleep(max(0.0, 4.0 - (time.monotonic() - produced_at)))  # a pause of at least ~4 s
        dlq.poll(SETTLE_S)
        alerts.poll(SETTLE_S)
        no_dead_letters(dlq)
        check_alive_and_clean(job, worker)

    current = latest(values_of(alerts.records))
    assert view(current.values()) == expected_after[-1]
    assert all(a["Phase"] in CLOSED for a in current.values()), phases(current.values())


def garbage_messages(
    valid_pool: list[dict[str, Any]], rng: random.Random, count: int = 500
) -> tuple[list[tuple[bytes | None, bytes | None]], dict[tuple[str, int | None], set[str]], set[str], int]:
    """`count` bad messages of many kinds (some envelopes with good records taken from `valid_pool`).

    Returns (messages as (key, value)), expected dead letters {(payload id, RecordIndex): allowed reasons},
    the payload ids of the big payloads (> 64 KiB), and how many valid records the messages hold."""
    t = valid_pool[0]["TimeGenerated"]  # a valid time, so a wrong-type record is refused for its field

    def base(i: int) -> dict[str, Any]:
        return {
            "TimeGenerated": t,
            "Computer": COMPUTER,
            "cIP": f"192.0.2.{i % 250 + 1}",
            "sIP": SIP,
            "sPort": 443,
            "csUserAgent": f"garbage-{i}",
            "Type": "W3CIISLog",
        }

    def with_(i: int, **fields: Any) -> bytes:
        rec = base(i)
        rec.update(fields)
        return orjson.dumps(rec)

    def without(i: int, name: str) -> bytes:
        rec = base(i)
        del rec[name]
        return orjson.dumps(rec)

    big = 800_000
    singles: list[tuple[bytes | None, set[str]]] = [
        # the big ones: an 800 KB value that makes the record invalid, a 100,000-deep array
        (with_(0, sPort="9" * big), {"invalid-field"}),
        (with_(1, sPort="x" * big), {"invalid-field"}),
        (with_(2, TimeGenerated="2" * big), {"invalid-time"}),
        (b"[" * 100_000 + b"]" * 100_000, {"invalid-json"}),
        # one of each singular kind
        (None, {"invalid-json"}),  # tombstone
        (b"", {"invalid-json"}),
        (b"null", {"not-an-object"}),
        (b"NaN", {"invalid-json"}),
        (b"Infinity", {"invalid-json"}),
        (b"1e400", {"invalid-json"}),
        (b"[]garbage", {"invalid-json"}),
    ]
    envelope_good = 0
    indexed: list[tuple[bytes, dict[int, set[str]]]] = []  # arrays and envelopes: bad records by index
    kinds = 16
    for i in range(3, count - len(singles) + 3):
        kind = i % kinds
        if kind == 0:
            singles.append((b"\xff\xfe" + rng.randbytes(rng.randrange(1, 300)) + b"%d" % i, {"undecodable"}))
        elif kind == 1:
            full = orjson.dumps({"garbage": i, **base(i)})  # cut after its unique first member
            cut = rng.randrange(len(b'{"garbage":%d,' % i), len(full) - 1)
            singles.append((full[:cut], {"invalid-json"}))
        elif kind == 2:
            singles.append((with_(i)[:-1] + b', "sPort": NaN}', {"invalid-json"}))
        elif kind == 3:
            singles.append((with_(i, cIP=i), {"invalid-field"}))
        elif kind == 4:
            singles.append((with_(i, sPort=[i]), {"invalid-field"}))
        elif kind == 5:
            singles.append((with_(i, csUserAgent={"agent": i}), {"invalid-field"}))
        elif kind == 6:
            singles.append((with_(i, TimeGenerated=1_600_000_000_000 + i), {"invalid-time"}))
        elif kind == 7:
            singles.append((with_(i, sPort=70_000 + i), {"invalid-field"}))
        elif kind == 8:
            singles.append((with_(i, Computer=bool(i % 2), sPort=i), {"invalid-field"}))
        elif kind == 9:
            singles.append(
                (without(i, ("cIP", "sIP", "Computer", "TimeGenerated")[i % 4]), {"missing-field"})
            )
        elif kind == 10:
            singles.append((with_(i, TimeGenerated=f"2022-13-45T99:{i % 60:02d}:00Z"), {"invalid-time"}))
        elif kind == 11:
            singles.append((b'{"cIP": "\xff%d", "Computer": "WEB01"}' % i, {"undecodable"}))
        elif kind == 12:
            singles.append((b'"a JSON string %d"' % i, {"not-an-object"}))
        elif kind == 13:  # a JSON array of numbers: each element is a record that is not an object
            n = 1 + i % 4
            indexed.append((orjson.dumps(list(range(i, i + n))), {k: {"not-an-object"} for k in range(n)}))
        elif kind == 14:  # an envelope mixing good and bad records
            good = [valid_pool.pop() for _ in range(3)]
            envelope_good += len(good)
            bad1 = orjson.loads(without(i, "sIP"))
            bad2 = orjson.loads(with_(i, sPort=f"port-{i}"))
            indexed.append(
                (
                    orjson.dumps({"records": [good[0], bad1, good[1], bad2, good[2]]}),
                    {1: {"missing-field"}, 3: {"invalid-field"}},
                )
            )
        else:
            singles.append((with_(i)[:-1] + b'} {"trailing": %d}' % i, {"invalid-json"}))

    messages: list[tuple[bytes | None, bytes | None]] = []
    expected: dict[tuple[str, int | None], set[str]] = {}
    keys: tuple[bytes | None, ...] = (None, b"garbage-key", b"\xfe\xff-not-utf8")
    # A message that is text rather than a JSON object may be a raw W3C line (what shippers send as
    # plain text or a JSON string): read that way, garbage fails as a W3C line.
    raw_line = {"field-count", "invalid-time", "invalid-field", "missing-field"}
    for n_msg, (value, reasons) in enumerate(singles):
        messages.append((keys[n_msg % 3], value))
        pid = TOMBSTONE if value is None else hashlib.sha256(value).hexdigest()
        assert (pid, None) not in expected, f"garbage message {n_msg} is not unique"
        expected[(pid, None)] = reasons | raw_line if reasons & {"invalid-json", "not-an-object"} else reasons
    for value, by_index in indexed:
        messages.append((None, value))
        pid = hashlib.sha256(value).hexdigest()
        for index, reasons in by_index.items():
            assert (pid, index) not in expected
            expected[(pid, index)] = reasons
    big_ids = {
        hashlib.sha256(v).hexdigest() for _, v in messages if v is not None and len(v) > DLQ_PAYLOAD_BYTES
    }
    assert len(messages) == count and len(big_ids) == 4
    return messages, expected, big_ids, envelope_good


def test_garbage_among_real_events_is_dead_lettered(job: Job, tmp_path: Path) -> None:
    """500 garbage messages among real events (non-UTF-8 bytes, truncated JSON, a 100,000-deep array,
    800 KB invalid values, wrong types, NaN, arrays of numbers, empty messages, odd keys, envelopes mixing
    good and bad records): exactly one dead letter per bad record with a reason of its kind, big payloads cut
    to 64 KiB with their length and SHA-256, every dead letter under 900,000 bytes; alerts equal replay over
    the valid records; the worker never exits."""
    rng = random.Random(22)
    records = recent_workload(6_000, seed=24, scan_share=0.2, benign_clients=1_000)
    pool = list(records[-300:])  # good records for the envelopes
    singles = records[:-300]
    messages, want, big_ids, in_envelopes = garbage_messages(pool, rng)
    assert in_envelopes + len(pool) == 300  # the envelopes' good records and the rest: all of `records`
    all_messages: list[tuple[bytes | None, bytes | None]] = [(None, orjson.dumps(r)) for r in singles]
    all_messages += [(None, orjson.dumps(r)) for r in pool]  # what the envelopes did not take
    for message in messages:
        all_messages.insert(rng.randrange(len(all_messages) + 1), message)
    # payload id -> the original bytes
    payload_of = {hashlib.sha256(v).hexdigest(): v for _, v in messages if v is not None}
    expected = expected_view(records)
    assert len(expected) >= 5, "the workload should hold several scans"

    env = job.env(idle_timeout="3s", partitions="4")  # default topology: the router meets the garbage
    job.cli("topics", "create", env=env)
    produce(job.brokers, job.input_topic, all_messages)  # type: ignore[arg-type]  # a tombstone (None)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    with job.worker("--data-dir", str(tmp_path / "data"), env=env) as worker:
        await_answer(alerts, expected, watchdog(job, worker), "alerts == replay over the valid records")
        try:
            dlq.poll_until(
                lambda got: len(got) >= len(want), 30, watchdog(job, worker), f"{len(want)} dead letters"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {describe_dead(values_of(dlq.records))}") from None
        dlq.poll(SETTLE_S)
        alerts.poll(SETTLE_S)
        check_alive_and_clean(job, worker)

    assert view(latest(values_of(alerts.records)).values()) == expected
    oversized = [len(r.value or b"") for r in dlq.records if len(r.value or b"") >= MAX_RECORD_BYTES]
    assert not oversized, f"dead letters of {oversized} bytes (limit {MAX_RECORD_BYTES})"
    letters = values_of(dlq.records)
    invalid = schema_errors(letters, "deadletter.schema.json")
    assert not invalid, f"{len(invalid)} schema violations, e.g. {invalid[:3]}"
    got = Counter((payload_id(d), d["RecordIndex"]) for d in letters)
    twice = [k for k, n in got.items() if n > 1]
    assert not twice, f"{len(twice)} bad records dead-lettered more than once, e.g. {twice[:3]}"
    missing = set(want) - set(got)
    unexpected = set(got) - set(want)
    assert not missing and not unexpected, (
        f"{len(missing)} bad records without a dead letter, e.g. "
        f"{[(payload_of.get(p, b'')[:60], i) for p, i in sorted(missing, key=str)[:3]]}; "
        f"{len(unexpected)} unexpected dead letters, e.g. {sorted(unexpected, key=str)[:3]}"
    )
    wrong = [
        (d["Reason"], sorted(want[(payload_id(d), d["RecordIndex"])]), d["Detail"][:80])
        for d in letters
        if d["Reason"] not in want[(payload_id(d), d["RecordIndex"])]
    ]
    assert not wrong, f"{len(wrong)} dead letters with an unexpected reason, e.g. {wrong[:3]}"
    for d in letters:
        pid = payload_id(d)
        if pid == TOMBSTONE:
            continue
        raw = payload_of[pid]
        where = f"dead letter of {raw[:40]!r} ({len(raw)} bytes)"
        assert d.get("PayloadBytes") == len(raw), f"{where}: PayloadBytes {d.get('PayloadBytes')}"
        assert d.get("PayloadSha256") == hashlib.sha256(raw).hexdigest(), f"{where}: PayloadSha256"
        assert d.get("PayloadTruncated") is (pid in big_ids), (
            f"{where}: PayloadTruncated {d.get('PayloadTruncated')}"
        )
        if pid in big_ids:
            kept = (
                d["Payload"].encode() if d["PayloadEncoding"] == "utf-8" else base64.b64decode(d["Payload"])
            )
            assert 0 < len(kept) <= DLQ_PAYLOAD_BYTES and raw.startswith(kept), (
                f"{where}: Payload {len(kept)} bytes"
            )


def test_hostile_scanner_with_8kb_values_gets_exact_alert(job: Job, tmp_path: Path) -> None:
    """One client, 200 requests to 200 ports in one bin, each with a unique 8 KB user agent, query string
    and user name: the worker keeps running, and the alert (200 connections, portCount 128, 200 distinct
    ports) has those sets cut to 1024-byte values (TruncatedSets), and trimmed to the alert's byte budgets
    (TrimmedSets), stays within --max-alert-bytes, and equals replay's, TruncatedSets and TrimmedSets
    included."""
    rng = random.Random(23)
    printable = "".join(map(chr, range(0x20, 0x7F)))

    def unique_8kb(i: int, what: str) -> str:
        return f"{what}{i:03d}-" + "".join(rng.choices(printable, k=8192 - len(what) - 4))

    b = (now_ms() - 2 * 3_600_000) // BIN_MS * BIN_MS
    scanner = "203.0.113.66"
    records = []
    for i in range(200):
        rec = event(b + i * 2_000, scanner, 20_000 + i)
        rec.update(
            csUserAgent=unique_8kb(i, "agent"),
            csUriQuery=unique_8kb(i, "q="),
            csUserName=unique_8kb(i, "user"),
        )
        records.append(rec)
    events = [e for e in map(event_from_record, records) if isinstance(e, IISEvent)]
    assert len(events) == 200
    (want,) = offline_alerts(events)
    shared = (*COMPARED, "TruncatedSets", "TrimmedSets")

    env = job.env(input_keyed="true", partitions="1", idle_timeout="3s")
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    with job.worker("--data-dir", str(tmp_path / "data"), env=env) as worker:
        send(job, records)

        def arrived(got: list[Record]) -> bool:
            no_dead_letters(dlq)
            dlq.poll(0.05)
            return any(a["ConnectionsCount"] == 200 and a["Phase"] == "final" for a in values_of(got))

        alerts.poll_until(
            arrived, STARTUP_AND_WORK_S, watchdog(job, worker), "final alert with 200 connections"
        )
        alerts.poll(SETTLE_S)
        no_dead_letters(dlq)
        check_alive_and_clean(job, worker)

    sizes = [len(r.value or b"") for r in alerts.records]
    assert max(sizes) <= DEFAULT_MAX_ALERT_BYTES, f"alert records of {sizes} bytes"
    assert schema_errors(values_of(alerts.records), "alert.schema.json") == []
    (alert,) = latest(values_of(alerts.records)).values()
    assert (alert["ConnectionsCount"], alert["portCount"], alert["DistinctPortCount"]) == (200, 128, 200)
    assert alert["Phase"] == "final"
    truncated = alert.get("TruncatedSets")
    assert isinstance(truncated, list), f"the alert has no TruncatedSets list: {truncated!r}"
    assert {"set_csUserAgent", "set_decodedUriQuery", "set_csUserName"} <= set(truncated), truncated
    # the byte budgets (4 KiB a set, 32 KiB the alert) dropped the largest members of those three sets
    assert alert.get("TrimmedSets") == sorted(truncated), alert.get("TrimmedSets")
    longest = {  # the longest value of each string set, in UTF-8 bytes
        name: max(len(v.encode()) for v in values)
        for name, values in alert.items()
        if name.startswith("set_") and name != "set_sPort" and values
    }
    too_long = {name: n for name, n in longest.items() if n > MAX_VALUE_BYTES}
    assert not too_long, f"set values longer than {MAX_VALUE_BYTES} bytes (longest per column): {too_long}"
    got = {k: alert.get(k) for k in shared}
    expect = {k: want.get(k) for k in shared}
    assert got == expect, "differs from replay in " + ", ".join(
        f"{k}: got {str(got[k])[:60]} want {str(expect[k])[:60]}" for k in shared if got[k] != expect[k]
    )


def test_spoofed_position_headers_cannot_suppress_events(job: Job, tmp_path: Path) -> None:
    """Keyed input (one partition): real events carrying src-topic/src-partition/src-offset/src-index headers
    that claim offset 10**12 of this very partition, then more real events for the same windows without
    headers. The headers are ignored on keyed input, so every event counts: latest alerts == replay."""
    b = (now_ms() - 3 * 3_600_000) // BIN_MS * BIN_MS
    low, high = "198.51.100.40", "198.51.100.41"  # below the threshold before the later events, and above
    spoofed = [event(b + 1_000 + i * 1_000, low, 1_000 + i) for i in range(20)]
    spoofed += [event(b + 1_000 + i * 1_000, high, 3_000 + i) for i in range(35)]
    later = [event(b + 100_000 + i * 1_000, low, 2_000 + i) for i in range(20)]
    later += [event(b + 100_000 + i * 1_000, high, 4_000 + i) for i in range(10)]
    expected = expected_view(spoofed + later)
    assert sorted((a["cIP"], a["ConnectionsCount"]) for a in expected.values()) == [(low, 40), (high, 45)]

    env = job.env(input_keyed="true", partitions="1", idle_timeout="3s")
    job.cli("topics", "create", env=env)
    alerts = job.reader(job.alert_topic)
    dlq = job.reader(job.dlq_topic)
    with job.worker("--data-dir", str(tmp_path / "data"), env=env) as worker:

        def claimed(i: int) -> list[tuple[str, bytes]]:
            """Headers claiming position 10**12 + i of this very partition (read as applied already)."""
            offset = str(10**12 + i).encode()
            return [
                (H_TOPIC, job.input_topic.encode()),
                (H_PARTITION, b"0"),
                (H_OFFSET, offset),
                (H_INDEX, b"0"),
            ]

        messages = [(k, v, claimed(i)) for i, (k, v) in enumerate(keyed(spoofed))]
        produce(job.brokers, job.input_topic, messages)
        # The spoofed events are in: the high client's early alert.
        alerts.poll_until(
            lambda got: any(a["cIP"] == high for a in values_of(got)),
            STARTUP_AND_WORK_S,
            watchdog(job, worker),
            "early alert from the spoofed events",
        )
        send(job, later)
        await_answer(alerts, expected, watchdog(job, worker), "alerts == replay over all events", dlq=dlq)
        dlq.poll(SETTLE_S)
        no_dead_letters(dlq)
        check_alive_and_clean(job, worker)

    current = latest(values_of(alerts.records))
    assert sorted((a["cIP"], a["ConnectionsCount"]) for a in current.values()) == [(low, 40), (high, 45)]
    assert view(current.values()) == expected


@pytest.mark.parametrize("app_id", ["bad*id", "bad id", "a/b"])
def test_app_id_is_validated(app_id: str) -> None:
    """`iis-portscan worker --app-id ID` with a character outside letters, digits, '.', '_', '-': exit 2 and
    a message naming --app-id, before any connection (the broker address is unreachable on purpose)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTSCAN_")}
    env["PORTSCAN_BROKERS"] = "127.0.0.1:1"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streams", "worker", "--app-id", app_id],
            env=env,
            capture_output=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker --app-id {app_id!r} still running after 20s (not refused)") from None
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, f"worker --app-id {app_id!r} exited {done.returncode}: {stderr[-500:]}"
    assert "--app-id" in stderr, f"stderr does not name --app-id: {stderr[-500:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
