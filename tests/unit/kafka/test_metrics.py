"""streams.kafka.metrics: the Prometheus exposition of the counters the hot path increments and of the
snapshot the app takes at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.metrics import COUNTER_HELP, Metrics, Snapshot, summary


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_every_counter_is_exposed_with_help_even_at_zero() -> None:
    metrics = Metrics()
    metrics.counts["batches"] += 3
    metrics.dead["invalid-json"] += 2
    metrics.alerts["early"] += 1
    metrics.seconds["processing"] += 0.25
    text = metrics.render().decode()
    got = samples(metrics)
    for name in COUNTER_HELP:
        assert f"# HELP iis_portscan_{name}_total" in text
        assert ("iis_portscan_" + name + "_total", ()) in got
    assert got[("iis_portscan_batches_total", ())] == 3
    assert got[("iis_portscan_dead_letters_total", (("reason", "invalid-json"),))] == 2
    assert got[("iis_portscan_alerts_total", (("phase", "early"),))] == 1
    assert got[("iis_portscan_processing_seconds_total", ())] == 0.25
    assert "_created" not in text  # no creation-time series beside every counter


def test_gauges_come_from_the_snapshot_at_scrape_time() -> None:
    snap = Snapshot(
        ready=True,
        partitions=2,
        open_windows=7,
        consumer_lag={("in", 1): 5},
        watermark_seconds={0: 1767268800.0},
    )
    got = samples(Metrics(snapshot=lambda: snap))
    assert got[("iis_portscan_ready", ())] == 1 and got[("iis_portscan_open_windows", ())] == 7
    assert got[("iis_portscan_consumer_lag", (("partition", "1"), ("topic", "in")))] == 5
    assert got[("iis_portscan_watermark_seconds", (("partition", "0"),))] == 1767268800.0


def test_the_log_line_lists_counters_alerts_dead_letters_and_gauges() -> None:
    metrics = Metrics()
    metrics.counts["batches"] = 2
    metrics.alerts["final"] = 1
    metrics.dead["too-large"] = 4
    assert summary(metrics, {"open_windows": 9}) == "batches=2 alerts_final=1 dead_too-large=4 open_windows=9"
