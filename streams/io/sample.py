"""A deterministic generator of realistic W3CIISLog traffic: benign requests plus port scans.

Used by the demo, the tests and the benchmark; the data is made here, not copied from anywhere.
Events come out in event-time order (optionally with bounded disorder), generated slice by slice so
that millions of events need little memory.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streams.core.timefmt import format_iso_ms

_SLICE_MS = 60_000
_PATHS = (
    "/",
    "/index.html",
    "/login.aspx",
    "/api/orders",
    "/api/items",
    "/static/app.js",
    "/owa/auth.owa",
    "/favicon.ico",
    "/search",
    "/Account/Login",
)
_QUERIES = (
    "-",
    "q=shoes",
    "id=42&page=2",
    "redirect=%2Fhome",
    "name=J%C3%BCrgen+M%C3%BCller",
    "a+b=c%20d",
    "term=%E2%82%AC+price",
    "x=%zz",
    "lang=en-US",
    "s=%u0041%u00e9",
)
_AGENTS = (
    "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+AppleWebKit/537.36+(KHTML,+like+Gecko)+Chrome/120.0+Safari/537.36",
    "Mozilla/5.0+(Macintosh;+Intel+Mac+OS+X+14_1)+AppleWebKit/605.1.15+(KHTML,+like+Gecko)+Version/17.1+Safari/605.1.15",
    "Mozilla/5.0+(X11;+Linux+x86_64;+rv:121.0)+Gecko/20100101+Firefox/121.0",
    "Microsoft+Office/16.0+(Windows+NT+10.0;+Microsoft+Outlook+16.0.17029;+Pro)",
    "curl/8.4.0",
)
_SCAN_AGENTS = (
    "Mozilla/5.0+zgrab/0.x",
    "masscan/1.3+(https://github.com/robertdavidgraham/masscan)",
    "Nmap+Scripting+Engine",
    "-",
)
# (scStatus, scSubStatus, scWin32Status, weight)
_STATUSES = (
    ("200", "0", "0", 70),
    ("304", "0", "0", 10),
    ("404", "0", "2", 8),
    ("401", "1", "2148074254", 4),
    ("401", "2", "5", 2),
    ("403", "4", "5", 1),
    ("500", "0", "64", 1),
    ("302", "0", "0", 4),
)
_SCAN_STATUSES = (("400", "0", "0"), ("404", "0", "2"), ("401", "0", "1326"), ("403", "0", "5"))
_METHODS = ("GET", "GET", "GET", "POST", "HEAD")
_SERVERS = (
    ("WEB01.contoso.local", "10.0.0.11"),
    ("WEB02.contoso.local", "10.0.0.12"),
    ("EXCH01.contoso.local", "10.0.1.20"),
)
_USERS = ("-", "-", "-", "CONTOSO\\alice", "CONTOSO\\bob", "svc-backup")


@dataclass(frozen=True, slots=True)
class Workload:
    """Shape of the generated traffic."""

    events: int = 100_000
    seed: int = 1
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    span_ms: int = 3 * 3_600_000
    benign_clients: int = 5_000
    scan_share: float = 0.05  # share of events that belong to scans
    min_scan_ports: int = 30
    max_scan_ports: int = 2_000
    near_miss_share: float = 0.2  # scans that stop at 29 ports in a bin: must not alert
    disorder_ms: int = 0  # events may arrive up to this much out of event-time order


@dataclass(frozen=True, slots=True)
class _Scan:
    cip: str
    server: int
    start_ms: int
    step_ms: int
    ports: tuple[int, ...]
    agent: str


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _plan_scans(w: Workload, rng: random.Random) -> list[_Scan]:
    scans: list[_Scan] = []
    budget = int(w.events * w.scan_share)
    while budget > 0:
        if rng.random() < w.near_miss_share:
            n = 29
        else:
            n = min(int(rng.paretovariate(1.2) * w.min_scan_ports), w.max_scan_ports)
        n = max(1, min(n, budget))
        ports = tuple(rng.sample(range(1, 65536), n))
        # Most scans finish well inside a bin; some are slow and straddle bin edges.
        duration = rng.choice((n * 50, n * 200, 9 * 60_000, 15 * 60_000))
        step = max(1, duration // n)
        start = w.start_ms + rng.randrange(max(1, w.span_ms - duration))
        scans.append(
            _Scan(_ip(rng), rng.randrange(len(_SERVERS)), start, step, ports, rng.choice(_SCAN_AGENTS))
        )
        budget -= n
    return scans


def _record(
    time_ms: int,
    cip: str,
    server: int,
    port: int,
    method: str,
    query: str,
    user: str,
    agent: str,
    status: tuple[str, str, str],
    stem: str,
    rng: random.Random,
) -> dict[str, Any]:
    computer, sip = _SERVERS[server]
    return {
        "TenantId": "5e4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
        "SourceSystem": "OpsManager",
        "TimeGenerated": format_iso_ms(time_ms)[:-1] + f"{rng.randrange(10_000):04d}Z",
        "Computer": computer,
        "sSiteName": "W3SVC1" if server != 2 else "W3SVC2",
        "sComputerName": computer.split(".")[0],
        "sIP": sip,
        "sPort": port,
        "csMethod": method,
        "csUriStem": stem,
        "csUriQuery": query,
        "csUserName": user,
        "cIP": cip,
        "csUserAgent": agent,
        "csReferer": "-",
        "csHost": "www.contoso.com",
        "csVersion": "HTTP/1.1",
        "scStatus": status[0],
        "scSubStatus": status[1],
        "scWin32Status": status[2],
        "TimeTaken": rng.randint(1, 900),
        "scBytes": rng.randint(200, 60_000),
        "csBytes": rng.randint(100, 2_000),
        "FileUri": "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex260101.log",
        "Type": "W3CIISLog",
    }


def generate(w: Workload) -> Iterator[dict[str, Any]]:
    """Yield `w.events` W3CIISLog records in event-time order (within `w.disorder_ms`)."""
    rng = random.Random(w.seed)
    scans = _plan_scans(w, rng)
    n_slices = max(1, w.span_ms // _SLICE_MS)
    by_slice: dict[int, list[tuple[int, int, int]]] = {}
    for si, scan in enumerate(scans):
        for i, port in enumerate(scan.ports):
            t = scan.start_ms + i * scan.step_ms
            by_slice.setdefault(min((t - w.start_ms) // _SLICE_MS, n_slices - 1), []).append((t, si, port))
    scan_events = sum(len(s.ports) for s in scans)
    benign_total = max(0, w.events - scan_events)
    clients = [_ip(rng) for _ in range(max(1, w.benign_clients))]
    weights = [s[3] for s in _STATUSES]
    produced_benign = 0
    for sl in range(n_slices):
        lo = w.start_ms + sl * _SLICE_MS
        target = benign_total * (sl + 1) // n_slices - produced_benign
        produced_benign += target
        batch: list[tuple[int, dict[str, Any]]] = []
        for t, si, port in by_slice.get(sl, ()):
            scan = scans[si]
            status = rng.choice(_SCAN_STATUSES)
            batch.append(
                (t, _record(t, scan.cip, scan.server, port, "GET", "-", "-", scan.agent, status, "/", rng))
            )
        for _ in range(target):
            t = lo + rng.randrange(_SLICE_MS)
            server = rng.randrange(len(_SERVERS))
            port = 443 if rng.random() < 0.8 else rng.choice((80, 8080, 8443))
            status = rng.choices(_STATUSES, weights)[0][:3]
            batch.append(
                (
                    t,
                    _record(
                        t,
                        rng.choice(clients),
                        server,
                        port,
                        rng.choice(_METHODS),
                        rng.choice(_QUERIES),
                        rng.choice(_USERS),
                        rng.choice(_AGENTS),
                        status,
                        rng.choice(_PATHS),
                        rng,
                    ),
                )
            )
        if w.disorder_ms:
            batch.sort(key=lambda item: item[0] + rng.randrange(w.disorder_ms))
        else:
            batch.sort(key=lambda item: item[0])
        for _, record in batch:
            yield record
