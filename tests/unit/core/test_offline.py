"""The rule over a set of events: bins, thresholds, caps, and independence from event order.

`reference_alerts` is a deliberately plain re-statement of the KQL (group with dicts, sets with
`set()`, cap with `sorted()[:cap]`) that the optimised core is checked against.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.core import enrich
from streams.core.offline import OfflineRule, offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.timefmt import format_iso_ms
from streams.io.sample import Workload, generate

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000


def ev(
    t: int,
    port: int | None,
    cip: str = "198.51.100.7",
    computer: str = "WEB01",
    sip: str = "10.0.0.11",
    **kw: str,
) -> IISEvent:
    return IISEvent(t, cip, computer, sip, port, **kw)


def reference_alerts(events: list[IISEvent], threshold: int = 30, cap: int = 128) -> list[dict[str, Any]]:
    groups: dict[tuple[int, str, str, str], list[IISEvent]] = defaultdict(list)
    for e in events:
        groups[(e.time_ms // BIN * BIN, e.cIP, e.Computer, e.sIP)].append(e)
    out = []
    for (start, cip, computer, sip), rows in groups.items():

        def col(f: Any) -> list[Any]:
            values = sorted({f(r) for r in rows} - {None})  # noqa: B023 (called at once)
            return values[:cap] if cap else values

        ports = col(lambda r: r.sPort)
        if len(ports) < threshold:
            continue
        out.append(
            {
                "TimeGenerated": format_iso_ms(start),
                "cIP": cip,
                "set_sPort": ports,
                "set_csUserName": col(lambda r: r.csUserName),
                "set_decodedUriQuery": col(lambda r: enrich.url_decode(r.csUriQuery)),
                "Computer": computer,
                "set_sSiteName": col(lambda r: r.sSiteName),
                "sIP": sip,
                "set_csUserAgent": col(lambda r: r.csUserAgent),
                "set_csMethod": col(lambda r: r.csMethod),
                "set_scStatusFull": col(lambda r: f"{r.scStatus}.{r.scSubStatus}"),
                "set_scStatusFull_Friendly": col(
                    lambda r: enrich.status_friendly(f"{r.scStatus}.{r.scSubStatus}")
                ),
                "set_scWin32Status_Hex": col(lambda r: enrich.to_hex(enrich.to_long(r.scWin32Status))),
                "set_scWin32Status_Friendly": col(
                    lambda r: enrich.win32_friendly(enrich.to_hex(enrich.to_long(r.scWin32Status)))
                ),
                "ConnectionsCount": len(rows),
                "portCount": len(ports),
                "DistinctPortCount": len({r.sPort for r in rows} - {None}),
            }
        )
    out.sort(key=lambda a: (-a["portCount"], a["TimeGenerated"], a["cIP"], a["Computer"], a["sIP"]))
    return out


def projected(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = (
        "TimeGenerated",
        "cIP",
        "set_sPort",
        "set_csUserName",
        "set_decodedUriQuery",
        "Computer",
        "set_sSiteName",
        "sIP",
        "set_csUserAgent",
        "set_csMethod",
        "set_scStatusFull",
        "set_scStatusFull_Friendly",
        "set_scWin32Status_Hex",
        "set_scWin32Status_Friendly",
        "ConnectionsCount",
        "portCount",
        "DistinctPortCount",
    )
    return [{k: a[k] for k in keep} for a in alerts]


def test_exact_bin_edge_opens_next_bin() -> None:
    before = [ev(T0 + BIN - 1, p) for p in range(1, 30)]  # 29 ports ending at 12:09:59.999
    at_edge = ev(T0 + BIN, 30)  # 12:10:00.000 belongs to the 12:10 bin
    assert offline_alerts([*before, at_edge]) == []
    alerts = offline_alerts([*before, ev(T0 + BIN - 1, 30)])
    assert len(alerts) == 1 and alerts[0]["TimeGenerated"] == "2026-01-01T12:00:00.000Z"


def test_29_ports_no_alert_30_ports_alert() -> None:
    assert offline_alerts([ev(T0 + i, p) for i, p in enumerate(range(1, 30))]) == []
    alerts = offline_alerts([ev(T0 + i, p) for i, p in enumerate(range(1, 31))])
    assert [a["portCount"] for a in alerts] == [30]


def test_repeated_ports_count_connections_not_ports() -> None:
    alerts = offline_alerts([ev(T0 + i, 1 + i % 30) for i in range(300)])
    assert alerts[0]["portCount"] == 30 and alerts[0]["ConnectionsCount"] == 300


def test_straddling_scan_split_by_bins() -> None:
    events = [ev(T0 + BIN - 20_000 + i * 1000, 100 + i) for i in range(40)]  # 20 before, 20 after the edge
    assert offline_alerts(events) == []
    assert offline_alerts(events, RuleParams(threshold=20)) != []


def test_keys_separate_groups() -> None:
    events = [ev(T0, p, cip=f"198.51.100.{p % 2}") for p in range(60)]
    assert [a["portCount"] for a in offline_alerts(events)] == [30, 30]
    assert sorted(a["cIP"] for a in offline_alerts(events)) == ["198.51.100.0", "198.51.100.1"]
    events = [ev(T0, p, computer=f"WEB0{p % 3}") for p in range(60)]
    assert offline_alerts(events) == []


def test_more_than_128_ports() -> None:
    alerts = offline_alerts([ev(T0 + p, p) for p in range(1, 2001)])
    assert alerts[0]["portCount"] == 128 and alerts[0]["DistinctPortCount"] == 2000
    unlimited = offline_alerts([ev(T0 + p, p) for p in range(1, 2001)], RuleParams(max_set_size=0))
    assert unlimited[0]["portCount"] == 2000


def test_enrichment_reaches_the_sets() -> None:
    events = [
        ev(T0 + p, p, scStatus="401", scSubStatus="1", scWin32Status="2148074254", csUriQuery="a+b%C3%A9")
        for p in range(30)
    ]
    events.append(ev(T0, 99, scStatus="404", scSubStatus="", scWin32Status="-", csUriQuery="-"))
    a = offline_alerts(events)[0]
    assert a["set_scStatusFull"] == ["401.1", "404."]
    assert a["set_scStatusFull_Friendly"] == [
        "Logon failed.",
        "See - https://support.microsoft.com/help/943891/the-http-status-code-in-iis-7-0-iis-7-5-and-iis-8-0",
    ]
    assert a["set_scWin32Status_Hex"] == ["", "8009030e"]
    assert a["set_scWin32Status_Friendly"] == [
        "SEC_E_NO_CREDENTIALS",
        "See - https://msdn.microsoft.com/library/cc231199.aspx",
    ]
    assert a["set_decodedUriQuery"] == ["-", "a bé"]
    literal = offline_alerts(events, RuleParams(plus_as_space=False))[0]
    assert literal["set_decodedUriQuery"] == ["-", "a+bé"]


event_strategy = st.builds(
    ev,
    t=st.integers(T0, T0 + 3 * BIN),
    port=st.none() | st.integers(1, 45),
    cip=st.sampled_from(["a", "b"]),
    computer=st.sampled_from(["WEB01", "WEB02"]),
    csUserName=st.sampled_from(["", "-", "alice", "bob"]),
    scWin32Status=st.sampled_from(["0", "5", "-", "", "2148074254", "-1"]),
)


@given(
    st.lists(event_strategy, max_size=400),
    st.randoms(use_true_random=False),
    st.sampled_from([(5, 8), (10, 0), (3, 3)]),
)
def test_alerts_independent_of_order_and_equal_to_reference(
    events: list[IISEvent], rnd: random.Random, params: tuple[int, int]
) -> None:
    threshold, cap = params
    rule = RuleParams(threshold=threshold, max_set_size=cap)
    expected = offline_alerts(events, rule)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert offline_alerts(shuffled, rule) == expected
    assert projected(expected) == reference_alerts(events, threshold, cap)


def test_realistic_workload_matches_reference() -> None:
    records = list(generate(Workload(events=60_000, seed=11, span_ms=2 * 3_600_000, scan_share=0.1)))
    events = [e for e in map(event_from_record, records) if isinstance(e, IISEvent)]
    assert len(events) == len(records)
    detector = OfflineRule()
    detector.add_all(events)
    alerts = detector.alerts()
    expected = reference_alerts(events)
    assert projected(alerts) == expected
    assert len(alerts) >= 5  # the workload holds scans
    assert any(a["DistinctPortCount"] > 128 for a in alerts)  # and wide ones, capped
    # near misses of 29 ports exist in the workload and must not alert
    assert all(a["portCount"] >= 30 for a in alerts)
