"""Messages as log shippers send them: every format gives the W3CIISLog twin's events and alerts.

The fixtures (tests/data/shippers, README there) hold one IIS log as each shipper puts it on Kafka.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.core.offline import offline_alerts
from streams.core.parse import MAX_KEY_CHARS, STRING_FIELDS, event_from_record, single_event
from streams.core.records import IISEvent, ParseError, Reason
from streams.core.shippers import (
    MessageReader,
    Read,
    parse_w3c_fields,
    site_of_path,
    w3c_fields_problem,
)
from streams.core.timefmt import MAX_MS, MIN_MS, parse_iso_ms
from streams.core.w3c import DEFAULT_W3C_FIELDS

DATA = Path(__file__).resolve().parents[2] / "data" / "shippers"
SHIPPERS = ("filebeat", "fluentbit", "vector", "cribl", "logstash", "ecs-envelope", "ecs", "nxlog")
SENDS_DIRECTIVES = {"fluentbit", "vector", "cribl", "logstash"}  # 8 header lines each
PATH = "C:\\inetpub\\logs\\LogFiles\\W3SVC1\\u_ex260101.log"
LINE = (
    "2026-01-01 00:12:00 10.0.0.11 GET / q=a+b 8000 - 203.0.113.50 Mozilla/5.0+(compatible;+Nmap) - 404 0 2 0"
)
CUSTOM = "date time s-sitename s-computername s-ip cs-method cs-uri-query s-port c-ip sc-status"
CUSTOM_LINE = "2026-01-01 00:00:05 W3SVC7 IIS-B 10.0.0.9 POST x=1 8443 198.51.100.9 500"


def messages(name: str) -> list[bytes]:
    return [line for line in (DATA / f"{name}.jsonl").read_bytes().splitlines() if line.strip()]


def twin() -> list[IISEvent]:
    events = [event_from_record(orjson.loads(line)) for line in messages("w3ciislog")]
    assert all(isinstance(e, IISEvent) for e in events)
    return events  # type: ignore[return-value]


def read_all(reader: MessageReader, payloads: list[bytes]) -> tuple[list[IISEvent], list[Read]]:
    reads = [reader.read(p) for p in payloads]
    events: list[IISEvent] = []
    for read in reads:
        for _, result in read:
            assert isinstance(result, IISEvent), result
            events.append(result)
    return events, reads


def one(read: Read) -> IISEvent | ParseError:
    assert len(read) == 1 and read[0][0] is None, read
    return read[0][1]


def event(read: Read) -> IISEvent:
    result = one(read)
    assert isinstance(result, IISEvent), result
    return result


def error(read: Read) -> ParseError:
    result = one(read)
    assert isinstance(result, ParseError), result
    return result


def fb(line: str, **extra: Any) -> bytes:
    """A Filebeat message around a line."""
    doc: dict[str, Any] = {
        "@timestamp": "2026-05-05T05:05:05.555Z",
        "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.17.0"},
        "log": {"offset": 0, "file": {"path": PATH}},
        "message": line,
        "host": {"name": "WEB01"},
        "agent": {"type": "filebeat"},
    }
    doc.update(extra)
    return orjson.dumps(doc)


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ECS to dotted keys, as Elastic's test fixtures write documents."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if type(value) is dict:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- every shipper's file: the twin's events and alerts ----------------------------------------------


@pytest.mark.parametrize("name", SHIPPERS)
def test_shipper_file_gives_the_twins_events_and_alerts(name: str) -> None:
    expected = twin()
    events, reads = read_all(MessageReader(), messages(name))
    assert offline_alerts(events) == offline_alerts(expected)
    assert len(offline_alerts(events)) == 2
    skipped = sum(1 for read in reads if not read)  # directives: skipped, never errors
    assert skipped == (8 if name in SENDS_DIRECTIVES else 0)
    if name == "ecs":  # the pipeline URL-decoded the query; everything else arrives as logged
        assert [unquote_plus(e.csUriQuery) for e in expected] == [e.csUriQuery for e in events]
        events = [
            dataclasses.replace(e, csUriQuery=x.csUriQuery) for e, x in zip(events, expected, strict=True)
        ]
    assert events == expected


def test_mixed_file_interleaving_every_format() -> None:
    expected = twin()
    events, reads = read_all(MessageReader(computer="WEB01"), messages("mixed"))
    assert offline_alerts(events) == offline_alerts(expected)
    assert sum(1 for read in reads if not read) == 8
    assert len(events) == len(expected)
    bare = 0
    for got, want in zip(events, expected, strict=True):
        if got.sSiteName == "-":  # a bare raw line: no file, hence no W3SVC site folder
            bare += 1
            got = dataclasses.replace(got, sSiteName=want.sSiteName)
        assert dataclasses.replace(got, csUriQuery=unquote_plus(got.csUriQuery)) == dataclasses.replace(
            want, csUriQuery=unquote_plus(want.csUriQuery)
        )
    assert bare > 0


def test_bare_raw_lines_and_the_log_itself() -> None:
    """The log's lines sent as text messages, headers included, read like the shippers' envelopes."""
    lines = (DATA / "W3SVC1" / "u_ex260101.log").read_bytes().splitlines()
    events, reads = read_all(MessageReader(computer="WEB01"), lines)
    assert sum(1 for read in reads if not read) == 8
    expected = [dataclasses.replace(e, sSiteName="-") for e in twin()]
    assert events == expected


def test_w3ciislog_records_read_as_the_worker_fast_path_does() -> None:
    reader = MessageReader()
    for payload in messages("w3ciislog")[:20]:
        assert event(reader.read(payload)) == single_event(payload)
    envelope = orjson.dumps({"records": [orjson.loads(p) for p in messages("w3ciislog")[:3]]})
    assert [index for index, _ in reader.read(envelope)] == [0, 1, 2]


def test_dotted_ecs_documents_read_as_nested_ones() -> None:
    reader = MessageReader()
    for payload in messages("ecs")[:30]:
        dotted = orjson.dumps(flatten(orjson.loads(payload)))
        assert reader.read(dotted) == reader.read(payload)


def test_logstash_legacy_mode_and_nested_envelopes() -> None:
    """Logstash without ECS: `host` and `path` strings; ECS event.original nested."""
    reader = MessageReader()
    legacy = {
        "@timestamp": "x",
        "@version": "1",
        "host": "WEB02",
        "path": "/var/W3SVC4/u.log",
        "message": LINE,
    }
    ev = event(reader.read(orjson.dumps(legacy)))
    assert (ev.Computer, ev.sSiteName, ev.cIP, ev.sPort) == ("WEB02", "W3SVC4", "203.0.113.50", 8000)
    nested = {"event": {"original": LINE}, "host": {"name": "WEB03"}, "log": {"file": {"path": PATH}}}
    assert event(reader.read(orjson.dumps(nested))).Computer == "WEB03"


# --- directives and layouts ------------------------------------------------------------------------


def test_directives_are_skipped_not_errors() -> None:
    reader = MessageReader(computer="H")
    for text in (
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: 2026-01-01",
    ):
        assert reader.read(text.encode()) == []
        assert reader.read(orjson.dumps({"log": text, "file": PATH})) == []
        assert reader.read(orjson.dumps({"_raw": text + "\r"})) == []
    assert reader.read(b"\xef\xbb\xbf#Software: IIS") == []  # a BOM before the first header
    assert reader.read(orjson.dumps({"message": ""})) == []  # an empty line: nothing


def test_fields_directive_sets_the_layout_of_its_source_only() -> None:
    reader = MessageReader(computer="DEF")
    a = {"file": "D:\\logs\\W3SVC7\\u_ex.log", "host": "IIS-A"}
    assert reader.read(orjson.dumps({**a, "log": "#Fields: " + CUSTOM})) == []
    ev = event(reader.read(orjson.dumps({**a, "log": CUSTOM_LINE})))
    assert (ev.sSiteName, ev.Computer, ev.sIP, ev.sPort, ev.csMethod, ev.scStatus) == (
        "W3SVC7", "IIS-B", "10.0.0.9", 8443, "POST", "500",
    )  # fmt: skip
    # Another file of the same host, the same file of another host, and bare lines keep the default.
    for other in ({**a, "file": "D:\\logs\\W3SVC8\\u_ex.log"}, {**a, "host": "IIS-C"}):
        assert error(reader.read(orjson.dumps({**other, "log": CUSTOM_LINE}))).reason is Reason.FIELD_COUNT
        assert event(reader.read(orjson.dumps({**other, "log": LINE}))).cIP == "203.0.113.50"
    assert error(reader.read(CUSTOM_LINE.encode())).reason is Reason.FIELD_COUNT
    # A #Fields line in an envelope of another shipper for the same (path, host): the same source.
    assert error(reader.read(orjson.dumps({"message": LINE, **a}))).reason is Reason.FIELD_COUNT
    reader.read(orjson.dumps({"_raw": "#Fields: " + " ".join(DEFAULT_W3C_FIELDS), "source": a["file"], **a}))
    assert event(reader.read(orjson.dumps({**a, "log": LINE}))).sPort == 8000


def test_date_directive_dates_lines_without_a_date_field() -> None:
    reader = MessageReader(computer="H")
    assert reader.read(b"#Fields: time c-ip s-ip s-port") == []
    assert error(reader.read(b"00:00:01 1.2.3.4 10.0.0.1 80")).reason is Reason.INVALID_TIME
    assert reader.read(b"#Date: 2026-02-03 00:00:00") == []
    assert event(reader.read(b"00:00:01 1.2.3.4 10.0.0.1 80")).time_ms == parse_iso_ms("2026-02-03T00:00:01Z")


def test_remembered_sources_are_bounded_least_recently_used_first() -> None:
    reader = MessageReader(computer="H", max_sources=2)
    a = {"file": "A"}
    reader.read(orjson.dumps({**a, "log": "#Fields: " + CUSTOM}))
    reader.read(orjson.dumps({"file": "B", "log": LINE}))
    assert event(reader.read(orjson.dumps({**a, "log": CUSTOM_LINE}))).sPort == 8443  # A used: B is oldest
    reader.read(orjson.dumps({"file": "C", "log": LINE}))  # B out
    assert event(reader.read(orjson.dumps({**a, "log": CUSTOM_LINE}))).sPort == 8443
    reader.read(orjson.dumps({"file": "B", "log": LINE}))  # C out
    reader.read(orjson.dumps({"file": "C", "log": LINE}))  # A out: back to the header-less list
    assert error(reader.read(orjson.dumps({**a, "log": CUSTOM_LINE}))).reason is Reason.FIELD_COUNT


@pytest.mark.parametrize("fields", [CUSTOM, "#Fields: " + CUSTOM, CUSTOM.split(), "  " + CUSTOM.upper()])
def test_custom_header_less_field_lists(fields: Any) -> None:
    reader = MessageReader(w3c_fields=fields)
    ev = event(reader.read(fb(CUSTOM_LINE)))
    assert (ev.Computer, ev.sSiteName, ev.sPort, ev.csUriQuery) == ("IIS-B", "W3SVC7", 8443, "x=1")
    assert ev.csUserAgent == ev.csUserName == "" and ev.time_ms == parse_iso_ms("2026-01-01T00:00:05Z")
    assert error(reader.read(fb(LINE))).reason is Reason.FIELD_COUNT


def test_field_list_checks() -> None:
    assert parse_w3c_fields(None) == parse_w3c_fields("") == parse_w3c_fields("  ") == DEFAULT_W3C_FIELDS
    assert w3c_fields_problem(None) is None and w3c_fields_problem(CUSTOM) is None
    assert w3c_fields_problem("date time c-ip") == "the W3C field list does not hold s-ip"
    assert "time" in (w3c_fields_problem("date c-ip s-ip") or "")
    with pytest.raises(ValueError, match="force"):
        MessageReader(force="json")


# --- metadata ----------------------------------------------------------------------------------------


HOSTS = {"host.name": "H1", "host": "H2", "hostname": "H3", "agent.hostname": "H4", "Hostname": "H5"}
PATHS = {
    "log.file.path": "C:\\x\\W3SVC1\\a.log",
    "file": "/x/W3SVC2/a.log",
    "path": "C:/x/W3SVC3/a.log",
    "source": "C:\\x\\W3SVC4\\a.log",
    "FileName": "C:\\x\\W3SVC5\\a.log",
}


def test_computer_line_then_envelope_host_in_order_then_default() -> None:
    layout = "#Fields: date time s-computername c-ip s-ip"
    reader = MessageReader(computer="DEFAULT")
    keys = list(HOSTS)
    for i, key in enumerate(keys):  # each host key wins over those after it
        envelope = {k: HOSTS[k] for k in keys[i:]}
        ev = event(reader.read(orjson.dumps({**envelope, "message": LINE})))
        assert ev.Computer == HOSTS[key], key
    nested = {"host": {"name": "N1"}, "agent": {"hostname": "N4"}, "message": LINE}
    assert event(reader.read(orjson.dumps(nested))).Computer == "N1"
    assert event(reader.read(orjson.dumps({"agent": {"hostname": "N4"}, "message": LINE}))).Computer == "N4"
    assert event(reader.read(orjson.dumps({"host": "", "message": LINE}))).Computer == "DEFAULT"
    # The line's own s-computername beats the envelope's host, unless it is '-'.
    src = {"file": "L", "host": "ENV"}
    reader.read(orjson.dumps({**src, "log": layout}))
    assert event(reader.read(orjson.dumps({**src, "log": "2026-01-01 00:00:00 LINE c s"}))).Computer == "LINE"
    assert event(reader.read(orjson.dumps({**src, "log": "2026-01-01 00:00:00 - c s"}))).Computer == "ENV"
    # No host anywhere and no default: an error, not a guess.
    assert "Computer is missing" in error(MessageReader().read(LINE.encode())).detail


def test_site_from_s_sitename_else_the_w3svc_folder_of_the_envelopes_path() -> None:
    reader = MessageReader(computer="H")
    keys = list(PATHS)
    for i, key in enumerate(keys):
        envelope = {k: PATHS[k] for k in keys[i:]}
        assert event(reader.read(orjson.dumps({**envelope, "_raw": LINE}))).sSiteName == f"W3SVC{i + 1}", key
    filebeat_like = {"log": {"file": {"path": PATHS["file"]}}, "message": LINE}
    assert event(reader.read(orjson.dumps(filebeat_like))).sSiteName == "W3SVC2"
    assert event(reader.read(orjson.dumps({"file": "/var/log/iis/u.log", "log": LINE}))).sSiteName == "-"
    assert event(MessageReader("H", dash_as_null=True).read(LINE.encode())).sSiteName == ""
    assert site_of_path("w3svc12\\u.log") == "w3svc12" and site_of_path("W3SVC1") == "-"
    assert site_of_path("") == site_of_path(None) == "-"
    reader.read(orjson.dumps({"file": PATHS["file"], "log": "#Fields: date time s-sitename c-ip s-ip"}))
    ev = event(
        reader.read(orjson.dumps({"file": PATHS["file"], "log": "2026-01-01 00:00:00 Default+Web+Site c s"}))
    )
    assert ev.sSiteName == "Default+Web+Site"


def test_event_time_is_the_lines_own_not_the_shippers() -> None:
    reader = MessageReader()
    line_ms = parse_iso_ms("2026-01-01T00:12:00Z")
    for doc in (
        {"@timestamp": "2030-01-01T00:00:00Z", "message": LINE, "host": "H"},
        {"@timestamp": 1893456000.5, "log": LINE, "hostname": "H"},
        {"_time": 1893456000, "_raw": LINE, "host": "H"},
        {"timestamp": "2030-01-01T00:00:00Z", "message": LINE, "source_type": "file", "host": "H"},
    ):
        assert event(reader.read(orjson.dumps(doc))).time_ms == line_ms


# --- NXLog and ECS: values, nulls and absent fields -----------------------------------------------------


NX = {
    "date": "2026-01-01",
    "time": "00:12:00",
    "s-ip": "10.0.0.11",
    "cs-method": "GET",
    "cs-uri-query": None,
    "s-port": 8000,
    "cs-username": None,
    "c-ip": "203.0.113.50",
    "cs(User-Agent)": "curl/8.5.0",
    "sc-status": 404,
    "sc-substatus": "0",
    "sc-win32-status": 2,
    "EventTime": "2026-01-01T01:12:00.000000+01:00",
    "Hostname": "WEB01",
    "FileName": PATH,
}

NX_NO_SIP = {k: v for k, v in NX.items() if k != "s-ip"}


def test_nxlog_values_nulls_and_absent_fields() -> None:
    ev = event(MessageReader().read(orjson.dumps(NX)))
    assert ev == IISEvent(
        parse_iso_ms("2026-01-01T00:12:00Z") or 0, "203.0.113.50", "WEB01", "10.0.0.11", 8000,
        "GET", "-", "-", "W3SVC1", "curl/8.5.0", "404", "0", "2",
    )  # fmt: skip
    nulls = event(MessageReader(dash_as_null=True).read(orjson.dumps({**NX, "cs-uri-query": "-"})))
    assert (nulls.csUriQuery, nulls.csUserName) == ("", "")
    absent = {k: v for k, v in NX.items() if k not in ("cs-username", "sc-substatus", "FileName")}
    ev = event(MessageReader().read(orjson.dumps(absent)))
    assert (ev.csUserName, ev.scSubStatus, ev.sSiteName) == ("", "", "-")  # not logged: ""; site stand-in
    upper = {k.upper() if k.startswith(("c", "s")) else k: v for k, v in NX.items()}
    assert event(MessageReader().read(orjson.dumps(upper))) == event(MessageReader().read(orjson.dumps(NX)))
    logged = {**NX, "s-sitename": None, "s-computername": "IIS-Z"}
    ev = event(MessageReader().read(orjson.dumps(logged)))
    assert (ev.sSiteName, ev.Computer) == ("-", "IIS-Z")
    assert event(MessageReader().read(orjson.dumps({**NX, "s-port": None}))).sPort is None


def test_nxlog_time_from_date_and_time_else_event_time() -> None:
    reader = MessageReader()
    no_date = {k: v for k, v in NX.items() if k not in ("date", "time")}
    assert event(reader.read(orjson.dumps(no_date))).time_ms == parse_iso_ms("2026-01-01T00:12:00Z")
    legacy = {**no_date, "EventTime": "2026-01-01 00:12:00"}  # classic to_json: no zone, read as UTC
    assert event(reader.read(orjson.dumps(legacy))).time_ms == parse_iso_ms("2026-01-01T00:12:00Z")
    bad = {**no_date, "EventTime": "yesterday"}
    assert error(reader.read(orjson.dumps(bad))).reason is Reason.INVALID_TIME
    no_time = {k: v for k, v in no_date.items() if k != "EventTime"}
    assert error(reader.read(orjson.dumps(no_time))).reason is Reason.MISSING_FIELD
    assert error(reader.read(orjson.dumps({**NX, "time": "25:00:00"}))).detail.startswith("NXLog record: ")


ECS = {
    "@timestamp": "2026-01-01T00:12:00.000Z",
    "source": {"address": "203.0.113.50", "ip": "203.0.113.50"},
    "destination": {"address": "10.0.0.11", "ip": "10.0.0.11", "port": 8000},
    "http": {"request": {"method": "GET"}, "response": {"status_code": 404}},
    "iis": {"access": {"sub_status": 0, "win32_status": 2}},
    "url": {"path": "/", "query": "q=a b"},
    "user_agent": {"original": "Mozilla/5.0 (compatible; Nmap)"},
    "host": {"name": "WEB01"},
    "log": {"file": {"path": PATH}},
    "event": {"original": "ignored when the document is parsed", "created": "2030-01-01T00:00:00Z"},
}


def test_ecs_document_values_and_absent_fields() -> None:
    ev = event(MessageReader().read(orjson.dumps(ECS)))
    assert ev == IISEvent(
        parse_iso_ms("2026-01-01T00:12:00Z") or 0, "203.0.113.50", "WEB01", "10.0.0.11", 8000,
        "GET", "q=a b", "-", "W3SVC1", "Mozilla/5.0+(compatible;+Nmap)", "404", "0", "2",
    )  # fmt: skip
    bare = {"@timestamp": ECS["@timestamp"], "source.ip": "c", "destination.ip": "s"}
    ev = event(MessageReader(computer="D").read(orjson.dumps(bare)))
    assert (ev.csMethod, ev.csUriQuery, ev.scStatus, ev.sSiteName) == ("-", "-", "-", "-")
    assert (ev.Computer, ev.sPort) == ("D", None)
    ev = event(MessageReader(computer="D", dash_as_null=True).read(orjson.dumps(bare)))
    assert (ev.csMethod, ev.csUserAgent, ev.sSiteName) == ("", "", "")
    named = {**ECS, "iis": {"access": {"site_name": "W3SVC9", "server_name": "IIS-S", "sub_status": 0}}}
    ev = event(MessageReader().read(orjson.dumps(named)))
    assert (ev.sSiteName, ev.Computer, ev.scWin32Status) == ("W3SVC9", "IIS-S", "-")
    address_only = {**ECS, "source": {"address": "198.51.100.1"}}
    assert event(MessageReader().read(orjson.dumps(address_only))).cIP == "198.51.100.1"
    port_only = {**ECS, "destination": {"port": 1, "ip": "s"}}
    assert event(MessageReader().read(orjson.dumps(port_only))).sPort == 1


# --- garbage of every shape: a ParseError naming the format ------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason", "prefix"),
    [
        (fb("not a w3c line"), Reason.FIELD_COUNT, "Filebeat envelope: "),
        (orjson.dumps({"message": "x y", "source_type": "file"}), Reason.FIELD_COUNT, "Vector envelope: "),
        (orjson.dumps({"message": "x", "@version": "1"}), Reason.FIELD_COUNT, "Logstash envelope: "),
        (orjson.dumps({"message": "x"}), Reason.FIELD_COUNT, "shipper envelope ('message'): "),
        (orjson.dumps({"log": "x", "@timestamp": 1.5}), Reason.FIELD_COUNT, "Fluent Bit envelope ('log'): "),
        (orjson.dumps({"_raw": "a b c", "_time": 1}), Reason.FIELD_COUNT, "Cribl envelope ('_raw'): "),
        (orjson.dumps({"event.original": "x"}), Reason.FIELD_COUNT, "ECS envelope ('event.original'): "),
        (fb(LINE.replace("8000", "99999")), Reason.INVALID_FIELD, "Filebeat envelope: s-port"),
        (fb(LINE.replace("00:12:00", "24:12:00")), Reason.INVALID_TIME, "Filebeat envelope: invalid date"),
        (fb(LINE, host={"name": "h" * 257}), Reason.INVALID_FIELD, "Filebeat envelope: Computer"),
        (fb(LINE.replace("203.0.113.50", "c" * 300)), Reason.INVALID_FIELD, "Filebeat envelope: cIP"),
        (b"garbage line", Reason.FIELD_COUNT, "raw W3C line: "),
        (b'"a JSON string"', Reason.FIELD_COUNT, "raw W3C line (JSON string): "),
        (orjson.dumps({**ECS, "@timestamp": "nope"}), Reason.INVALID_TIME, "ECS document: @timestamp"),
        (orjson.dumps({**ECS, "@timestamp": 5}), Reason.INVALID_TIME, "ECS document: @timestamp"),
        (orjson.dumps({"source.ip": "c", "@timestamp": "2026-01-01T00:00:00Z"}), Reason.MISSING_FIELD,
         "ECS document: destination.ip"),
        (orjson.dumps({**ECS, "destination": {"ip": "s", "port": "http"}}), Reason.INVALID_FIELD,
         "ECS document: destination.port"),
        (orjson.dumps({**ECS, "http": {"request": {"method": ["GET"]}}}), Reason.INVALID_FIELD,
         "ECS document: http.request.method"),
        (orjson.dumps({**ECS, "source": {"ip": {"v4": 1}}}), Reason.INVALID_FIELD, "ECS document: client IP"),
        (orjson.dumps({**NX, "s-port": 70000}), Reason.INVALID_FIELD, "NXLog record: s-port"),
        (orjson.dumps({**NX, "sc-status": 1.5}), Reason.INVALID_FIELD, "NXLog record: sc-status"),
        (orjson.dumps({**NX, "c-ip": "c" * 300}), Reason.INVALID_FIELD, "NXLog record: cIP"),
        (orjson.dumps(NX_NO_SIP), Reason.MISSING_FIELD, "NXLog record: s-ip"),
        (orjson.dumps({"TimeGenerated": "x", "cIP": "c"}), Reason.INVALID_TIME, "W3CIISLog record: "),
        (orjson.dumps({"cIP": "c"}), Reason.MISSING_FIELD, "W3CIISLog record: TimeGenerated"),
        (b"{broken", Reason.INVALID_JSON, "JSON message: "),
        (b"  [1, 2", Reason.INVALID_JSON, "JSON message: "),
        (b"{}", Reason.MISSING_FIELD, "unrecognised message"),
        (orjson.dumps({"message": 5, "log": {"file": {}}}), Reason.MISSING_FIELD, "unrecognised message"),
        (b"42", Reason.NOT_AN_OBJECT, "expected a JSON object or a W3C line, got number"),
        (b"null", Reason.NOT_AN_OBJECT, "expected a JSON object or a W3C line, got null"),
        (b"\xff\xfe", Reason.UNDECODABLE, "payload is not UTF-8"),
        (b"   ", Reason.INVALID_JSON, "empty message"),
        (None, Reason.INVALID_JSON, "empty message (tombstone)"),
    ],
)  # fmt: skip
def test_garbage_of_each_shape_names_its_format(payload: bytes | None, reason: Reason, prefix: str) -> None:
    result = error(MessageReader(computer="H").read(payload))
    assert result.reason is reason and result.detail.startswith(prefix), result


def test_arrays_envelopes_and_multi_line_messages_give_indexes() -> None:
    reader = MessageReader(computer="H")
    out = reader.read(orjson.dumps([orjson.loads(fb(LINE)), 7, {"log": "#Version: 1.0"}, LINE]))
    assert [(i, type(r)) for i, r in out] == [(0, IISEvent), (1, ParseError), (3, IISEvent)]
    text = "#Software: x\r\n" + LINE + "\r\n\r\n" + LINE.replace("8000", "8001") + "\r\n"
    assert [(i, r.sPort) for i, r in reader.read(text.encode())] == [(1, 8000), (3, 8001)]  # type: ignore[union-attr]
    assert reader.read(orjson.dumps({"records": []})) == [] and reader.read(b"[]") == []


def test_forced_formats() -> None:
    nx, ecs, line = orjson.dumps(NX), orjson.dumps(ECS), fb(LINE)
    assert event(MessageReader(force="nxlog").read(nx)).cIP == "203.0.113.50"
    assert error(MessageReader(force="nxlog").read(line)).detail.startswith("NXLog record: ")
    assert event(MessageReader(force="ecs").read(ecs)).cIP == "203.0.113.50"
    assert error(MessageReader(force="ecs").read(line)).detail.startswith("ECS document: ")
    assert error(MessageReader(force="w3ciislog").read(line)).detail.startswith("W3CIISLog record: ")
    assert error(MessageReader(force="w3ciislog").read(LINE.encode())).reason is Reason.INVALID_JSON
    raw = MessageReader(force="raw", computer="H")
    assert event(raw.read(line)).sPort == 8000
    assert event(raw.read(orjson.dumps({**ECS, "message": LINE}))).sPort == 8000  # the line, not the fields
    assert error(raw.read(nx)).detail.startswith("raw W3C line envelope: ")
    assert error(raw.read(b"{not json")).reason is Reason.FIELD_COUNT  # taken as a line
    assert (
        error(MessageReader(force="ecs").read(b"1")).detail
        == "ECS document: expected a JSON object, got number"
    )
    assert MessageReader(force="nxlog").read(b'[{"c-ip": "c"}, 2]')[1] == (
        1,
        ParseError(Reason.NOT_AN_OBJECT, "NXLog record: expected a JSON object, got number"),
    )


# --- adversarial input: read() never raises, every event is well-formed ---------------------------


def check(read: Read) -> None:
    assert isinstance(read, list)
    for index, result in read:
        assert index is None or type(index) is int
        if isinstance(result, ParseError):
            assert type(result.reason) is Reason and type(result.detail) is str
            orjson.dumps(result.detail)  # dead letters carry it
            continue
        assert type(result) is IISEvent
        assert type(result.time_ms) is int and MIN_MS <= result.time_ms <= MAX_MS
        for name in ("cIP", "Computer", "sIP"):
            assert type(getattr(result, name)) is str and len(getattr(result, name)) <= MAX_KEY_CHARS
        orjson.dumps([getattr(result, name) for name in ("cIP", "Computer", "sIP", *STRING_FIELDS)])
        assert result.sPort is None or (type(result.sPort) is int and 0 <= result.sPort <= 65535)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.sampled_from(
    [
        "message", "log", "_raw", "event", "event.original", "original", "host", "host.name", "name",
        "hostname", "agent", "Hostname", "file", "path", "source", "FileName", "log.file.path", "records",
        "TimeGenerated", "cIP", "sIP", "Computer", "sPort", "c-ip", "s-ip", "s-port", "date", "time",
        "EventTime", "cs-method", "sc-status", "s-computername", "s-sitename", "source.ip", "ip", "address",
        "destination", "destination.ip", "port", "@timestamp", "url", "query", "user_agent", "iis", "access",
        "site_name", "server_name", "http", "request", "method", "response", "status_code",
    ]
)  # fmt: skip
W3C_TEXT = st.lists(
    st.sampled_from(
        ["2026-01-01", "00:00:01", "1.2.3.4", "-", "80", "99999", "#Fields:", "c-ip", "s-ip", "\n", "x"]
    )
    | st.text(max_size=8),
    max_size=18,
).map(" ".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | W3C_TEXT | st.text(max_size=20)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)


@FUZZ
@given(st.binary(max_size=300))
@example(b"#Fields: c-ip\n1.2.3.4")
@example(b"[" * 100_000)
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    check(MessageReader(computer="H").read(data))


@FUZZ
@given(st.lists(JSON, min_size=1, max_size=4), st.sampled_from([None, "w3ciislog", "raw", "ecs", "nxlog"]))
def test_fuzz_json_messages_never_raise(docs: list[Any], force: str | None) -> None:
    reader = MessageReader(computer=None, force=force, max_sources=2)
    for doc in docs:  # one reader across messages: sources, layouts and their eviction in play
        try:
            payload = orjson.dumps(doc)
        except (orjson.JSONEncodeError, TypeError):  # NaN, ints beyond 64 bits: not JSON orjson writes
            continue
        check(reader.read(payload))
        check(reader.read(payload.decode()))


@FUZZ
@given(W3C_TEXT, W3C_TEXT, st.text(max_size=30))
def test_fuzz_w3c_lines_in_envelopes_never_raise(header: str, line: str, host: str) -> None:
    reader = MessageReader(computer="H", dash_as_null=True)
    for key in ("message", "log", "_raw", "event.original"):
        check(reader.read(orjson.dumps({key: "#Fields: " + header, "host": host})))
        check(reader.read(orjson.dumps({key: line, "host": host, "file": host})))
    check(reader.read(line))


def test_huge_values_stay_bounded() -> None:
    reader = MessageReader(computer="H")
    big = "x" * 1_000_000
    check(reader.read(orjson.dumps({"message": LINE, "file": big, "host": "h"})))
    check(reader.read(orjson.dumps({"log": "#Fields: " + " ".join(["c-ip"] * 100_000), "file": "F"})))
    check(reader.read(orjson.dumps({**NX, "date": big})))
    check(reader.read(orjson.dumps({**ECS, "@timestamp": big})))
    check(reader.read(LINE.replace("Nmap", big).encode()))
    assert (
        error(reader.read(orjson.dumps({**NX, "EventTime": big, "date": None}))).reason is Reason.INVALID_TIME
    )
