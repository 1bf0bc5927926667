"""Alert records: the rule's 16 columns in order, stable identity, metadata."""

from __future__ import annotations

from streams.core.aggregate import WindowAgg
from streams.core.alerts import RULE_COLUMNS, alert_id, alert_sort_key, build_alert
from streams.core.rule import RuleParams
from streams.core.windows import WindowKey

KEY = WindowKey(1_767_269_400_000, "203.0.113.9", "WEB01", "10.0.0.11")


def make_agg(ports: range) -> WindowAgg:
    agg = WindowAgg()
    for p in ports:
        agg.add(KEY.start_ms + p, p, ("u", "q", "s", "ua", "GET", "404.0", "See", "2", "file"), 128)
    return agg


def test_columns_in_rule_order_then_metadata() -> None:
    alert = build_alert(KEY, make_agg(range(1, 40)), RuleParams())
    assert tuple(alert)[:16] == RULE_COLUMNS
    assert alert["TimeGenerated"] == "2026-01-01T12:10:00.000Z"
    assert alert["WindowEnd"] == "2026-01-01T12:20:00.000Z"
    assert alert["portCount"] == 39 == alert["DistinctPortCount"]
    assert alert["ConnectionsCount"] == 39
    assert alert["FirstSeen"] == "2026-01-01T12:10:00.001Z"
    assert alert["LastSeen"] == "2026-01-01T12:10:00.039Z"
    assert alert["Entities"] == [{"Type": "ip", "Address": "203.0.113.9"}]
    assert alert["Severity"] == "Medium" and alert["Techniques"] == ["T1190"]


def test_port_count_capped_distinct_exact() -> None:
    alert = build_alert(KEY, make_agg(range(1, 301)), RuleParams())
    assert alert["portCount"] == 128
    assert alert["set_sPort"] == list(range(1, 129))
    assert alert["DistinctPortCount"] == 300


def test_alert_id_is_stable_and_distinct() -> None:
    # Pinned: the id must not change between versions, runs or hosts.
    assert alert_id(KEY, 600_000) == alert_id(WindowKey(*KEY), 600_000)
    assert alert_id(KEY, 600_000) == "a76c8391-7528-5b68-9865-bfecd65c68eb"
    others = {
        alert_id(KEY._replace(cIP="203.0.113.10"), 600_000),
        alert_id(KEY._replace(Computer="WEB02"), 600_000),
        alert_id(KEY._replace(sIP="10.0.0.12"), 600_000),
        alert_id(KEY._replace(start_ms=KEY.start_ms + 600_000), 600_000),
        alert_id(KEY, 300_000),
    }
    assert alert_id(KEY, 600_000) not in others and len(others) == 5


def test_sort_key_orders_by_port_count_desc_then_time_then_cip() -> None:
    a = {"portCount": 40, "TimeGenerated": "2026-01-01T12:10:00.000Z", "cIP": "b", "Computer": "", "sIP": ""}
    b = {"portCount": 50, "TimeGenerated": "2026-01-01T12:20:00.000Z", "cIP": "c", "Computer": "", "sIP": ""}
    c = {"portCount": 40, "TimeGenerated": "2026-01-01T12:10:00.000Z", "cIP": "a", "Computer": "", "sIP": ""}
    d = {"portCount": 40, "TimeGenerated": "2026-01-01T12:00:00.000Z", "cIP": "z", "Computer": "", "sIP": ""}
    assert sorted([a, b, c, d], key=alert_sort_key) == [b, d, c, a]
