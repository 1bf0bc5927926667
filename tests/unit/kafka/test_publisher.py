"""streams.kafka.publisher: alerts keyed by AlertId, escaped; a record the broker refuses for good
becomes an `unpublishable` dead letter; a refused dead letter is counted, never looped."""

from __future__ import annotations

import orjson

from streams.core.offline import offline_alerts
from streams.core.records import IISEvent
from streams.kafka.metrics import Metrics
from streams.kafka.publisher import Publisher
from tests.harness import NOW, T0, RecordingProducer

ALERT = {"AlertId": "a-1", "cIP": "198.51.100.7\x1b[31m", "portCount": 31}


def publisher(too_large: int = 10**9) -> tuple[Publisher, RecordingProducer, Metrics]:
    producer, metrics = RecordingProducer(too_large), Metrics()
    return Publisher(producer, "alerts", "dlq", metrics, clock=lambda: NOW), producer, metrics  # type: ignore[arg-type]


def test_alerts_are_keyed_by_their_id_and_escaped() -> None:
    pub, producer, _ = publisher()
    pub.send([ALERT], [(b"dl-key", {"Reason": "invalid-json"})])
    (topic, key, value), (dlq, dl_key, _) = producer.sent
    assert (topic, key, dlq, dl_key) == ("alerts", b"a-1", "dlq", b"dl-key")
    assert b"\x1b" not in (value or b"") and orjson.loads(value or b"")["cIP"] == ALERT["cIP"]


def test_a_refused_alert_becomes_an_unpublishable_dead_letter() -> None:
    pub, producer, metrics = publisher(too_large=10)
    pub.send([ALERT], [])
    ((topic, key, value),) = producer.sent
    letter = orjson.loads(value or b"")
    assert topic == "dlq" and (key or b"").startswith(b"unpublishable/alerts/")
    assert letter["Reason"] == "unpublishable" and "refused this" in letter["Detail"]
    assert metrics.dead["unpublishable"] == 1


def test_a_refused_dead_letter_is_counted_and_not_sent_again() -> None:
    producer, metrics = RecordingProducer(too_large=10, never_refused="none"), Metrics()
    pub = Publisher(producer, "alerts", "dlq", metrics)  # type: ignore[arg-type]
    pub.send([], [(b"k", {"Payload": "x" * 100})])
    assert producer.sent == [] and metrics.counts["dead_letters_unsendable"] == 1


def test_ocsf_alerts_are_findings_within_their_budget() -> None:
    producer = RecordingProducer()
    pub = Publisher(producer, "alerts", "dlq", ocsf_max_bytes=32_768)  # type: ignore[arg-type]
    events = [IISEvent(T0 + i * 1000, "198.51.100.7", "WEB01", "10.0.0.11", 1000 + i) for i in range(30)]
    (alert,) = offline_alerts(events)
    pub.send([alert], [])
    ((_, key, value),) = producer.sent
    assert (
        key == alert["AlertId"].encode()
        and len(value or b"") <= 32_768
        and orjson.loads(value or b"")["class_uid"] == 2004
    )
