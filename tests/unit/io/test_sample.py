"""streams.io.sample: generated traffic is deterministic per seed, ordered, and holds the scans and
near misses it promises (what the demo and the benchmarks rely on)."""

from __future__ import annotations

from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.io.sample import Workload, generate

W = Workload(events=5_000, seed=7, span_ms=3_600_000, benign_clients=200)


def events(w: Workload) -> list[IISEvent]:
    out = []
    for record in generate(w):
        event = event_from_record(record)
        assert isinstance(event, IISEvent), record
        out.append(event)
    return out


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    assert list(generate(W)) == list(generate(W))
    assert list(generate(W)) != list(generate(Workload(events=5_000, seed=8, span_ms=3_600_000)))


def test_records_are_valid_in_event_time_order_within_the_span() -> None:
    got = events(W)
    assert len(got) >= W.events
    times = [e.time_ms for e in got]
    assert times == sorted(times)
    assert W.start_ms <= times[0] and times[-1] < W.start_ms + W.span_ms + 3_600_000


def test_scans_alert_and_near_misses_do_not() -> None:
    alerts = offline_alerts(events(W))
    assert alerts, "no scan reached the threshold"
    assert all(a["portCount"] >= 30 for a in alerts)
    counts = {}
    for e in events(W):
        counts.setdefault((e.cIP, e.time_ms // 600_000), set()).add(e.sPort)
    assert any(len(ports) == 29 for ports in counts.values())  # a near miss: 29 ports in a bin
