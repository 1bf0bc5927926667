"""Regenerate this folder's fixtures: one IIS W3C log, its W3CIISLog twin, and the same lines as each
log shipper puts them on Kafka (see README.md for where each shape comes from).

    .venv/bin/python tests/data/shippers/make_fixtures.py

Deterministic: the same files every run. The W3C log is written first (IIS's default field list, two
header blocks as IIS writes them after a restart, CRLF line endings); every other file is derived
from its lines with plain string handling, independently of the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

HERE = Path(__file__).resolve().parent
LOG = HERE / "W3SVC1" / "u_ex260101.log"
HOST = "WEB01"
WIN_PATH = "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex260101.log"
SLASH_PATH = "C:/inetpub/logs/LogFiles/W3SVC1/u_ex260101.log"
FIELDS = (
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) "
    "sc-status sc-substatus sc-win32-status time-taken"
).split()

CHROME = (
    "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+AppleWebKit/537.36+(KHTML,+like+Gecko)"
    "+Chrome/131.0.0.0+Safari/537.36"
)
FIREFOX = "Mozilla/5.0+(X11;+Linux+x86_64;+rv:133.0)+Gecko/20100101+Firefox/133.0"
NMAP = "Mozilla/5.0+(compatible;+Nmap+Scripting+Engine;+https://nmap.org/book/nse.html)"
MASSCAN = "masscan/1.3+(https://github.com/robertdavidgraham/masscan)"
CURL = "curl/8.5.0"
HOME, LOGIN, ALICE = "https://www.contoso.com/", "https://www.contoso.com/account", "CONTOSO\\alice"
DAY = datetime(2026, 1, 1, tzinfo=UTC)


def at(hh: int, mm: int, ss: int) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm, seconds=ss)


def line(
    t: datetime,
    sip: str,
    method: str,
    stem: str,
    query: str,
    port: int,
    user: str,
    cip: str,
    agent: str,
    referer: str,
    status: int,
    sub: int,
    win32: int,
    taken: int,
) -> tuple[datetime, str]:
    values = [t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S"), sip, method, stem, query, str(port), user, cip]
    values += [agent, referer, str(status), str(sub), str(win32), str(taken)]
    return t, " ".join(values)


# Benign requests: (s-ip, method, stem, query, port, user, c-ip, agent, referer, status, sub, win32, taken).
BENIGN = (
    ("10.0.0.11", "GET", "/", "-", 443, "-", "198.51.100.7", CHROME, "-", 200, 0, 0, 46),
    ("10.0.0.11", "GET", "/css/site.css", "v=3", 443, "-", "198.51.100.7", CHROME, HOME, 304, 0, 0, 2),
    ("10.0.0.11", "GET", "/health", "-", 80, "-", "10.0.0.5", CURL, "-", 200, 0, 0, 1),
    ("10.0.0.11", "POST", "/account/login", "-", 443, ALICE, "192.0.2.44", FIREFOX, LOGIN, 401, 1, 1326, 15),
    ("10.0.0.11", "GET", "/search", "q=a+b&page=2", 443, ALICE, "192.0.2.44", FIREFOX, "-", 200, 0, 0, 31),
    ("10.0.0.12", "GET", "/search", "q=caf%C3%A9", 443, "-", "198.51.100.61", "-", "-", 200, 0, 0, 12),
    ("10.0.0.12", "GET", "/go", "redirect=%2Fhome", 443, "-", "198.51.100.61", CHROME, "-", 302, 0, 0, 3),
    ("10.0.0.11", "GET", "/admin", "-", 443, "-", "198.51.100.23", CHROME, "-", 403, 4, 5, 0),
)  # fmt: skip


def benign(start: datetime, minutes: int, salt: int) -> list[tuple[datetime, str]]:
    """Ordinary traffic: browsers, a health check, a failed logon, searches, a forbidden page."""
    out = []
    for i in range(minutes * 2):
        t = start + timedelta(seconds=30 * i + (i * 7 + salt) % 23)
        out.append(line(t, *BENIGN[(i + salt) % len(BENIGN)]))  # type: ignore[arg-type]
    return out


def scan(
    start: datetime,
    cip: str,
    sip: str,
    ports: range,
    step: int,
    agent: str,
    methods: tuple[str, ...],
    queries: tuple[str, ...] = ("-",),
) -> list[tuple[datetime, str]]:
    out = []
    for i, port in enumerate(ports):
        t = start + timedelta(seconds=step * i)
        status, sub, win32 = ((404, 0, 2), (400, 0, 0), (404, 0, 64))[i % 3]
        method, query = methods[i % len(methods)], queries[i % len(queries)]
        out.append(line(t, sip, method, "/", query, port, "-", cip, agent, "-", status, sub, win32, 0))
    return out


def header(t: datetime) -> list[str]:
    return [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        f"#Date: {t:%Y-%m-%d %H:%M:%S}",
        "#Fields: " + " ".join(FIELDS),
    ]


def log_lines() -> list[str]:
    """Two header blocks (IIS restarted at 00:31): 40- and 31-port scans, a 29-port near miss, a
    36-port scan split 12/24 across two bins, and benign traffic throughout."""
    block1 = benign(at(0, 0, 3), 30, 0)
    block1 += scan(at(0, 12, 0), "203.0.113.50", "10.0.0.11", range(8000, 8040), 5, NMAP, ("GET",))
    block1 += scan(at(0, 21, 0), "203.0.113.77", "10.0.0.11", range(9100, 9129), 4, CURL, ("HEAD",))
    block2 = benign(at(0, 31, 10), 20, 3)
    probes = ("-", "q=a+b", "file=..%2F..%2Fetc%2Fpasswd", "id=1%27+OR+%271%27%3D%271")
    methods = ("GET", "OPTIONS")
    block2 += scan(at(0, 32, 0), "192.0.2.200", "10.0.0.12", range(7000, 7031), 6, MASSCAN, methods, probes)
    block2 += scan(at(0, 38, 0), "198.51.100.200", "10.0.0.11", range(6000, 6036), 10, NMAP, ("GET",))
    out = header(at(0, 0, 0)) + [text for _, text in sorted(block1)]
    out += header(at(0, 31, 7)) + [text for _, text in sorted(block2)]
    return out


# --- what each line becomes --------------------------------------------------------------------------


def split(text: str) -> dict[str, str]:
    return dict(zip(FIELDS, text.split(" "), strict=True))


def line_time(f: dict[str, str]) -> datetime:
    return datetime.strptime(f"{f['date']} {f['time']}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def iso_ms(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def read_time(number: int, f: dict[str, str] | None, last: datetime) -> datetime:
    """When a shipper read the line: a little after it was written (directives: after the last line)."""
    base = line_time(f) if f else last
    return base + timedelta(milliseconds=350 + (number * 173) % 1400)


def w3ciislog(f: dict[str, str]) -> dict[str, Any]:
    """As Azure Monitor's agent ingests the line (W3CIISLog columns; '-' kept)."""
    return {
        "TimeGenerated": iso_ms(line_time(f)),
        "Computer": HOST,
        "sSiteName": "W3SVC1",
        "sIP": f["s-ip"],
        "csMethod": f["cs-method"],
        "csUriStem": f["cs-uri-stem"],
        "csUriQuery": f["cs-uri-query"],
        "sPort": int(f["s-port"]),
        "csUserName": f["cs-username"],
        "cIP": f["c-ip"],
        "csUserAgent": f["cs(User-Agent)"],
        "csReferer": f["cs(Referer)"],
        "scStatus": f["sc-status"],
        "scSubStatus": f["sc-substatus"],
        "scWin32Status": f["sc-win32-status"],
        "TimeTaken": int(f["time-taken"]),
        "SourceSystem": "OpsManager",
        "Type": "W3CIISLog",
    }


def filebeat(text: str, offset: int, read: datetime) -> dict[str, Any]:
    """Filebeat 8 with its IIS module, Kafka output, codec.json (nested objects, @metadata kept)."""
    return {
        "@timestamp": iso_ms(read),
        "@metadata": {
            "beat": "filebeat",
            "type": "_doc",
            "version": "8.17.0",
            "pipeline": "filebeat-8.17.0-iis-access-pipeline",
        },
        "log": {"offset": offset, "file": {"path": WIN_PATH}},
        "message": text,
        "input": {"type": "log"},
        "event": {"dataset": "iis.access", "module": "iis"},
        "fileset": {"name": "access"},
        "service": {"type": "iis"},
        "ecs": {"version": "1.12.0"},
        "host": {
            "name": HOST,
            "hostname": HOST,
            "architecture": "x86_64",
            "os": {
                "platform": "windows",
                "family": "windows",
                "name": "Windows Server 2022 Datacenter",
                "kernel": "10.0.20348.2849 (WinBuild.160101.0800)",
                "build": "20348.2849",
                "type": "windows",
                "version": "10.0",
            },
            "id": "5c3e1f0a-0d7c-4a3b-9b0b-6f2a7c1e8d11",
            "ip": ["10.0.0.11", "10.0.0.12", "fe80::5d3a:1c2b:9e4f:7a10"],
            "mac": ["00-15-5D-01-02-03"],
        },
        "agent": {
            "type": "filebeat",
            "version": "8.17.0",
            "ephemeral_id": "0f4e7a52-1c1b-4d8e-9a0c-3b7d2e6f5a91",
            "id": "d2b7c1e4-58a3-4f0e-8c6d-1a9b3e7f2c40",
            "name": HOST,
        },
    }


def fluentbit(text: str, read: datetime) -> dict[str, Any]:
    """Fluent Bit tail (Path_Key file) + record_modifier (hostname) + kafka output, Format json."""
    return {"@timestamp": round(read.timestamp(), 6), "log": text, "file": WIN_PATH, "hostname": HOST}


def vector(text: str, read: datetime) -> dict[str, Any]:
    """Vector file source + kafka sink, encoding.codec = json (keys in Vector's sorted order)."""
    stamp = read.strftime("%Y-%m-%dT%H:%M:%S.") + f"{read.microsecond:06d}Z"
    return {"file": WIN_PATH, "host": HOST, "message": text, "source_type": "file", "timestamp": stamp}


def cribl(text: str, read: datetime) -> dict[str, Any]:
    """Cribl Edge file monitor source + Kafka destination (JSON events)."""
    return {
        "_raw": text,
        "_time": round(read.timestamp(), 3),
        "cribl_breaker": "Break on newlines",
        "host": HOST,
        "source": WIN_PATH,
        "sourcetype": "ms:iis:auto",
    }


def logstash(text: str, read: datetime) -> dict[str, Any]:
    """Logstash 8 file input (ECS v8 mode: event.original, host.name, log.file.path) + kafka output,
    codec json. The file input splits on '\\n', so a line of IIS's CRLF file keeps its '\\r'."""
    return {
        "@timestamp": iso_ms(read),
        "@version": "1",
        "event": {"original": text + "\r"},
        "host": {"name": HOST},
        "log": {"file": {"path": SLASH_PATH}},
        "message": text + "\r",
    }


def ecs_envelope(text: str, offset: int, read: datetime) -> dict[str, Any]:
    """An ECS event holding the line unparsed in event.original, keys dotted (Elastic's fixture form)."""
    return {
        "@timestamp": iso_ms(read),
        "data_stream.dataset": "iis.access",
        "data_stream.namespace": "default",
        "data_stream.type": "logs",
        "ecs.version": "8.11.0",
        "event.dataset": "iis.access",
        "event.original": text,
        "host.name": HOST,
        "input.type": "filestream",
        "log.file.path": WIN_PATH,
        "log.offset": offset,
    }


def ecs_document(f: dict[str, str], text: str, offset: int, read: datetime) -> dict[str, Any]:
    """What Elastic's IIS ingest pipeline (filebeat/module/iis/access/ingest/pipeline.yml) makes of a
    default-layout line: grok drops '-' fields, url.query and user_agent.original URL-decoded,
    @timestamp from the line, the read time kept as event.created, null fields removed."""

    def present(name: str) -> str | None:
        return None if f[name] == "-" else f[name]

    status = int(f["sc-status"])
    doc: dict[str, Any] = {
        "@timestamp": iso_ms(line_time(f)),
        "agent": {"type": "filebeat", "version": "8.17.0", "name": HOST},
        "destination": {"address": f["s-ip"], "ip": f["s-ip"], "port": int(f["s-port"])},
        "ecs": {"version": "1.12.0"},
        "event": {
            "category": ["web", "network"],
            "created": iso_ms(read),
            "dataset": "iis.access",
            "duration": int(f["time-taken"]) * 1_000_000,
            "kind": "event",
            "module": "iis",
            "original": text,
            "outcome": "success" if status < 400 else "failure",
            "type": ["connection"],
        },
        "fileset": {"name": "access"},
        "host": {"name": HOST},
        "http": {"request": {"method": f["cs-method"]}, "response": {"status_code": status}},
        "iis": {"access": {"sub_status": int(f["sc-substatus"]), "win32_status": int(f["sc-win32-status"])}},
        "input": {"type": "log"},
        "log": {"file": {"path": WIN_PATH}, "offset": offset},
        "related": {"ip": [f["c-ip"], f["s-ip"]]},
        "service": {"type": "iis"},
        "source": {"address": f["c-ip"], "ip": f["c-ip"]},
        "url": {"original": f["cs-uri-stem"], "path": f["cs-uri-stem"]},
    }
    if (query := present("cs-uri-query")) is not None:
        doc["url"]["query"] = unquote_plus(query)
    if (user := present("cs-username")) is not None:
        doc["user"] = {"name": user}
        doc["related"]["user"] = [user]
    if (agent := present("cs(User-Agent)")) is not None:
        doc["user_agent"] = {"original": unquote_plus(agent)}
    if (referer := present("cs(Referer)")) is not None:
        doc["http"]["request"]["referrer"] = referer
    return doc


def nxlog(f: dict[str, str], read: datetime) -> dict[str, Any]:
    """NXLog Agent: im_file + xm_w3c (InputType), Exec $Hostname = hostname(); $FileName = file_name();
    $EventTime = parsedate($date + "T" + $time + "Z"); to_json(); om_kafka. '-' becomes null; datetimes
    print in the host's local time (here UTC+1) with its offset."""
    local = timedelta(hours=1)
    record: dict[str, Any] = {
        "EventReceivedTime": (read + local).strftime("%Y-%m-%dT%H:%M:%S.%f+01:00"),
        "SourceModuleName": "iis_w3c",
        "SourceModuleType": "im_file",
    }
    record.update({k: None if v == "-" else v for k, v in f.items()})
    record["EventTime"] = (line_time(f) + local).strftime("%Y-%m-%dT%H:%M:%S.%f+01:00")
    record["Hostname"] = HOST
    record["FileName"] = WIN_PATH
    return record


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def main() -> None:
    lines = log_lines()
    LOG.parent.mkdir(exist_ok=True)
    LOG.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    offsets, pos = [], 0
    for text in lines:
        offsets.append(pos)
        pos += len(text.encode()) + 2
    out: dict[str, list[str]] = {name: [] for name in FORMATS}
    mixed: list[str] = []
    last = DAY
    data_index = 0
    for number, (text, offset) in enumerate(zip(lines, offsets, strict=True)):
        directive = text.startswith("#")
        f = None if directive else split(text)
        read = read_time(number, f, last)
        last = read
        shapes: dict[str, str] = {
            "fluentbit": dumps(fluentbit(text, read)),
            "vector": dumps(vector(text, read)),
            "cribl": dumps(cribl(text, read)),
            "logstash": dumps(logstash(text, read)),
        }
        if f is not None:  # Filebeat's module drops '#' lines; xm_w3c consumes them; ECS never has them
            shapes["filebeat"] = dumps(filebeat(text, offset, read))
            shapes["ecs-envelope"] = dumps(ecs_envelope(text, offset, read))
            shapes["ecs"] = dumps(ecs_document(f, text, offset, read))
            shapes["nxlog"] = dumps(nxlog(f, read))
            shapes["w3ciislog"] = dumps(w3ciislog(f))
        for name, shape in shapes.items():
            out[name].append(shape)
        mixed.append(mixed_choice(text, f, shapes, data_index if f else number))
        data_index += f is not None
    for name, shaped in out.items():
        (HERE / f"{name}.jsonl").write_text("\n".join(shaped) + "\n", encoding="utf-8")
    (HERE / "mixed.jsonl").write_text("\n".join(mixed) + "\n", encoding="utf-8")


FORMATS = (
    "w3ciislog",
    "filebeat",
    "fluentbit",
    "vector",
    "cribl",
    "logstash",
    "ecs-envelope",
    "ecs",
    "nxlog",
)
BENIGN_CLIENTS = {"198.51.100.7", "10.0.0.5", "192.0.2.44", "198.51.100.61", "198.51.100.23"}


def mixed_choice(text: str, f: dict[str, str] | None, shapes: dict[str, str], i: int) -> str:
    """Each line once, its shape taken in turn from every format; a bare raw line (no file, hence no
    W3SVC site) only for benign clients, whose windows never alert."""
    if f is None:
        return [shapes["fluentbit"], shapes["vector"], shapes["cribl"], shapes["logstash"], text][i % 5]
    if f["c-ip"] in BENIGN_CLIENTS and i % 10 == 9:
        return text
    return shapes[FORMATS[i % len(FORMATS)]]


if __name__ == "__main__":
    main()
