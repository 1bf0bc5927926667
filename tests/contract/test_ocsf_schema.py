"""OCSF output against the published OCSF schema and against our own JSON Schema of it.

The published definition comes from the `ocsf-json-schema` package, which ships the OCSF server's
compiled exports (https://schema.ocsf.io/<version>/export/schema) for every release. Each record is
checked two ways, for the version we target and for every other release defining Detection Finding:
the JSON Schema (draft 2020-12) that package generates from the export for class 2004, and a direct
walk of the export here (attributes defined by the class and its objects, requirements, types and
their regexes and lengths, enum values and their captions, deprecations, constraints, observables);
only `unmapped` (OCSF's free-form object) may hold names the schema does not define.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions

from streams.cli import main
from streams.core.aggregate import WindowAgg
from streams.core.alerts import build_alert
from streams.core.engine import PartitionEngine, StreamParams
from streams.core.ocsf import OCSF_VERSION, is_hostname, is_ip, to_ocsf
from streams.core.offline import offline_alerts
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, encode_writes
from streams.core.windows import META_KEY, WindowKey
from streams.io.sample import Workload, generate

pytestmark = pytest.mark.contract

SCHEMAS = resources.files("streams") / "schemas"
OURS = "ocsf-detection-finding.schema.json"
CLASS = "detection_finding"
T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
BIN = 600_000
NOW = T0 + 30 * BIN
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


@cache
def export(version: str) -> dict[str, Any]:
    return dict(get_ocsf_schema(version=version))


def versions_with_class() -> list[str]:
    releases = [v for v in get_packaged_versions() if re.fullmatch(r"\d+\.\d+\.\d+", v)]
    return sorted((v for v in releases if CLASS in export(v)["classes"]), key=_release)


VERSIONS = versions_with_class()


@cache
def published_validator(version: str) -> Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(export(version)).get_class_schema(CLASS)
    return Draft202012Validator(schema)


@cache
def our_validator() -> Draft202012Validator:
    return Draft202012Validator(
        json.loads((SCHEMAS / OURS).read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


# ------------------------------------------------------------------ a walk of the published export


class Export:
    """One OCSF release's compiled export: the class, its objects, the dictionary's types."""

    def __init__(self, version: str) -> None:
        raw = export(version)
        self.version = version
        self.v2 = "dictionary" in raw  # 1.8.0 is exported in the server's v2 layout
        self.types: dict[str, Any] = raw["dictionary"]["types"]["attributes"] if self.v2 else raw["types"]
        self.objects: dict[str, Any] = raw["objects"]
        self.cls: dict[str, Any] = raw["classes"][CLASS]

    def in_profile(self, attr: dict[str, Any]) -> bool:
        """Attributes a profile adds are not part of the class without that profile (we apply none)."""
        return not (attr.get("profiles") if self.v2 else attr.get("profile"))

    def base(self, type_name: str) -> str:
        return str(self.types[type_name].get("type", type_name))


def check_record(ex: Export, record: dict[str, Any]) -> list[str]:
    """Everything in `record` that the published class definition does not allow; [] when valid."""
    errors: list[str] = []
    observable_values: set[tuple[str, int, str]] = set()

    def walk(value: dict[str, Any], definition: dict[str, Any], path: str) -> None:
        attrs = {n: a for n, a in definition["attributes"].items() if ex.in_profile(a)}
        for name in value:
            if name not in attrs:
                errors.append(f"{path}{name}: not an attribute of {definition.get('name', CLASS)}")
        for name, attr in attrs.items():
            if attr.get("requirement") == "required" and name not in value:
                errors.append(f"{path}{name}: required, missing")
        for kind, names in (definition.get("constraints") or {}).items():
            present = [n for n in names if n in value]
            if (kind == "at_least_one" and not present) or (kind == "just_one" and len(present) != 1):
                errors.append(f"{path[:-1] or CLASS}: constraint {kind} of {names}")
        for name, item in value.items():
            attr = attrs.get(name)
            if attr is None:
                continue
            if "@deprecated" in attr:
                errors.append(f"{path}{name}: deprecated")
            if attr.get("is_array"):
                if not isinstance(item, list):
                    errors.append(f"{path}{name}: must be an array")
                    continue
                for element in item:
                    check(element, attr, f"{path}{name}")
            else:
                check(item, attr, f"{path}{name}")
            sibling = attr.get("sibling")
            if sibling and "enum" in attr and sibling in value:
                caption = attr["enum"].get(str(item), {}).get("caption")
                if value[sibling] != caption:
                    errors.append(
                        f"{path}{sibling}: {value[sibling]!r} is not {name} {item}'s caption {caption!r}"
                    )

    def check(item: Any, attr: dict[str, Any], path: str) -> None:
        type_name = attr["type"]
        if type_name == "object_t":
            if not isinstance(item, dict):
                errors.append(f"{path}: must be an object")
            elif attr["object_type"] != "object":  # `object` (unmapped) is free-form
                walk(item, ex.objects[attr["object_type"]], f"{path}.")
            return
        base = ex.base(type_name)
        tdef = ex.types[type_name]
        if base == "string_t":
            if not isinstance(item, str):
                errors.append(f"{path}: must be a string")
                return
            limit = tdef.get("max_len") or ex.types["string_t"].get("max_len")
            if limit and len(item) > limit:
                errors.append(f"{path}: longer than {limit}")
            if "regex" in tdef and re.search(tdef["regex"], item) is None:
                errors.append(f"{path}: {item!r} does not match {type_name}")
            if "observable" in tdef:
                observable_values.add((path.replace("[]", ""), tdef["observable"], item))
        elif base in ("integer_t", "long_t"):
            low, high = INT32 if base == "integer_t" else INT64
            if type(item) is not int or not low <= item <= high:
                errors.append(f"{path}: must be a {base}")
        elif base == "boolean_t":
            if type(item) is not bool:
                errors.append(f"{path}: must be a boolean")
        elif base == "float_t":
            if type(item) not in (int, float):
                errors.append(f"{path}: must be a number")
        elif base != "json_t":
            errors.append(f"{path}: unknown type {type_name}")
        if "enum" in attr and str(item) not in attr["enum"]:
            errors.append(f"{path}: {item!r} is not one of {sorted(attr['enum'])}")

    walk(record, ex.cls, "")
    # Observables point at values the record holds under that name, with the type's observable id;
    # and every typed value (ip_t, hostname_t, ...) outside `unmapped` is listed.
    listed = {(o["name"], o["type_id"], o.get("value")) for o in record.get("observables", [])}
    if listed != observable_values:
        errors.append(
            f"observables {sorted(listed)} != values of observable types {sorted(observable_values)}"
        )
    return errors


# ------------------------------------------------------------------ records made by the real core


def ev(t: int, port: int, cip: str = "198.51.100.7", computer: str = "WEB01.contoso.local") -> IISEvent:
    return IISEvent(t, cip, computer, "10.0.0.11", port, csMethod="GET", scStatus="404", scWin32Status="2")


def stream_alerts() -> list[dict[str, Any]]:
    """early, final and late revisions of one window, and a window first seen closed (late only)."""
    params = StreamParams(
        grace_ms=120_000, idle_timeout_ms=60_000, retention_ms=3_600_000, max_skew_ms=10**12
    )
    engine = PartitionEngine(params, Meta.from_bytes(None), NOW)
    store: dict[bytes, bytes] = {}
    batches = [
        [ev(T0 + i, i) for i in range(30)],
        [ev(T0 + BIN + 120_000, 1, cip="2001:db8::50")],
        [ev(T0 + 5, 999)],
        [ev(T0 + 7, p, cip="2001:db8::9", computer="lab host") for p in range(40)],
    ]
    published: list[dict[str, Any]] = []
    offset = 0
    for events in batches:
        batch = list(enumerate(events, offset))
        offset += len(events)
        plan = engine.plan(batch)
        out = engine.step(plan, {k: store.get(k) for k in plan.load}, NOW)
        published.extend(out.alerts)
        store.update(encode_writes(out.writes))
    assert [a["Phase"] for a in published] == ["early", "final", "late", "late"]
    assert META_KEY in store
    return published


def replay_alerts() -> list[dict[str, Any]]:
    """`replay`'s alerts over generated traffic with port scans."""
    events = []
    for record in generate(Workload(events=6000, seed=5, span_ms=3_600_000, benign_clients=300)):
        event = event_from_record(record)
        assert isinstance(event, IISEvent)
        events.append(event)
    alerts = offline_alerts(events)
    assert len(alerts) >= 3
    return alerts


def edge_alerts() -> list[dict[str, Any]]:
    """Hostile keys (not an address, not a host name, empty), cut strings, a trimmed record."""
    out = []
    for cip, computer, sip in (("not-an-ip", "WEB 01 (lab)", ""), ("", "", ""), ("fe80::1%eth0", "-", "::1")):
        agg = WindowAgg()
        for p in range(30):
            agg.add(
                T0 + p, p, ("-", "q" * 2000, "W3SVC1", "\u00e9" * 700, "GET", "404.0", "x", "2", "f"), 128
            )
        out.append(build_alert(WindowKey(T0, cip, computer, sip), agg, RuleParams()))
    params = RuleParams(max_set_size=0, max_record_bytes=65_536)
    agg = WindowAgg()
    for p in range(3000):
        agg.add(T0 + p, p, (f"u{p}", f"q={p}" * 20, "W3SVC1", "ua", "GET", "404.0", "x", "2", "f"), 0)
    out.append(
        {
            **build_alert(WindowKey(T0, "203.0.113.9", "WEB01", "10.0.0.11"), agg, params),
            "Revision": 6001,
            "Phase": "final",
        }
    )
    return out


@cache
def records() -> list[tuple[str, dict[str, Any]]]:
    made = [(f"stream-{a['Phase']}-{i}", to_ocsf(a, 900_000)) for i, a in enumerate(stream_alerts())]
    made += [(f"replay-{i}", to_ocsf(a, 900_000)) for i, a in enumerate(replay_alerts()[:5])]
    made += [(f"edge-{i}", to_ocsf(a, 65_536)) for i, a in enumerate(edge_alerts())]
    made += [
        ("tenant", to_ocsf({**replay_alerts()[0], "TenantId": "contoso"}, 65_536))
    ]  # metadata.tenant_uid
    example = json.loads((SCHEMAS / "examples" / OURS.replace(".schema.json", ".example.json")).read_text())
    return [*made, ("example", example)]


def test_the_targeted_version_is_published_and_the_class_is_2004() -> None:
    assert OCSF_VERSION in VERSIONS
    assert VERSIONS[0] == "1.1.0"  # Detection Finding's first release
    for version in VERSIONS:
        cls = export(version)["classes"][CLASS]
        assert (cls["uid"], cls["category_uid"]) == (2004, 2)
        assert {"200401", "200402"} <= set(cls["attributes"]["type_uid"]["enum"])


def test_records_cover_every_kind() -> None:
    made = records()
    kinds = {(r["activity_id"], r["unmapped"].get("Phase")) for _, r in made}
    assert {(1, "early"), (2, "final"), (2, "late"), (1, None)} <= kinds
    assert any("name" in r.get("evidences", [{}])[0].get("src_endpoint", {}) for _, r in made)
    assert any("evidences" not in r for _, r in made)
    assert any(r["unmapped"]["TrimmedSets"] for _, r in made)
    assert any(r["metadata"].get("tenant_uid") == r["unmapped"].get("TenantId") == "contoso" for _, r in made)


@pytest.mark.parametrize("version", VERSIONS)
def test_records_validate_against_the_published_class(version: str) -> None:
    validator = published_validator(version)
    ex = Export(version)
    for label, rec in records():
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(rec)
        ]
        assert errors == [], (version, label)
        assert check_record(ex, rec) == [], (version, label)


def test_the_walk_rejects_what_the_class_does_not_define() -> None:
    ex = Export(OCSF_VERSION)
    good = records()[0][1]
    assert check_record(ex, good) == []
    cases = [
        ({**good, "src_endpoint": {"ip": "10.0.0.1"}}, "src_endpoint: not an attribute"),
        ({**good, "activity_id": 7}, "activity_id: 7 is not one of"),
        ({**good, "activity_name": "Update"}, "activity_name: 'Update' is not activity_id 1's caption"),
        ({**good, "time": "2026-01-01"}, "time: must be a long_t"),
        ({k: v for k, v in good.items() if k != "metadata"}, "metadata: required, missing"),
        ({**good, "finding_info": {**good["finding_info"], "product_uid": "x"}}, "product_uid: deprecated"),
        ({**good, "evidences": [{}]}, "constraint at_least_one"),
        ({**good, "evidences": [{"src_endpoint": {"ip": "10.0.0.300"}}]}, "does not match ip_t"),
        ({**good, "count": 2**31}, "count: must be a integer_t"),
        ({**good, "observables": good["observables"][:1]}, "observables"),
    ]
    for bad, message in cases:
        errors = check_record(ex, bad)
        assert any(message in e for e in errors), (message, errors)
        assert list(published_validator(OCSF_VERSION).iter_errors(bad)) or message.startswith(
            ("activity_name", "product_uid", "observables", "count")  # what JSON Schema cannot say
        )


def test_our_schema_is_valid_and_real_records_validate() -> None:
    schema = json.loads((SCHEMAS / OURS).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["metadata"]["properties"]["version"]["const"] == OCSF_VERSION
    for label, rec in records():
        assert [e.message for e in our_validator().iter_errors(rec)] == [], label


def test_our_schema_embeds_the_alert_schema_unchanged() -> None:
    embedded = json.loads((SCHEMAS / OURS).read_text())["$defs"]["alert"]
    assert embedded == json.loads((SCHEMAS / "alert.schema.json").read_text()), (
        "alert.schema.json changed: copy it into $defs.alert of " + OURS
    )


def test_our_schema_ties_activity_to_phase() -> None:
    rec = records()[0][1]
    assert rec["unmapped"]["Phase"] == "early"
    v = our_validator()
    assert list(v.iter_errors({**rec, "activity_id": 2}))
    final = {**rec, "unmapped": {**rec["unmapped"], "Phase": "final"}}
    assert list(v.iter_errors(final))  # a final revision must be an Update
    assert list(v.iter_errors({**rec, "unmapped": {**rec["unmapped"], "cIP": 1}}))
    assert list(v.iter_errors({**rec, "extra": 1}))


def test_the_example_is_the_example_alert_converted() -> None:
    alert = json.loads((SCHEMAS / "examples" / "alert.example.json").read_text())
    example = json.loads((SCHEMAS / "examples" / OURS.replace(".schema.json", ".example.json")).read_text())
    assert example == to_ocsf(alert), "regenerate the example: to_ocsf(alert.example.json), indent 2"


def test_records_fit_the_record_bound() -> None:
    for label, rec in records():
        if label.startswith("edge"):
            assert len(orjson.dumps(rec)) <= 65_536, label


IP_T = Export(OCSF_VERSION).types["ip_t"]
HOSTNAME_T = Export("1.1.0").types["hostname_t"]  # 1.1.0's hostname_t has a regex; later ones none


@given(st.ip_addresses())
def test_every_address_we_map_is_an_ocsf_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    for text in {str(address), address.exploded, address.compressed}:
        if is_ip(text):
            assert len(text) <= IP_T["max_len"] and re.search(IP_T["regex"], text), text
        else:
            assert len(text) > IP_T["max_len"], text


@given(st.text(max_size=60) | st.from_regex(r"[A-Za-z0-9.:%-]{1,45}", fullmatch=True))
def test_text_we_map_as_ip_or_hostname_matches_the_published_types(text: str) -> None:
    if is_ip(text):
        assert re.search(IP_T["regex"], text), text
    if is_hostname(text):
        assert re.search(HOSTNAME_T["regex"], text), text


def test_replay_alert_format_ocsf_writes_one_valid_finding_per_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        b"".join(
            orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)
            for r in generate(Workload(events=6000, seed=5, span_ms=3_600_000, benign_clients=300))
        )
    )
    sentinel, ocsf, from_env = (tmp_path / n for n in ("sentinel.jsonl", "ocsf.jsonl", "env.jsonl"))
    assert main(["replay", str(source), "--output", str(sentinel)]) == 0
    assert main(["replay", str(source), "--alert-format", "ocsf", "--output", str(ocsf)]) == 0
    monkeypatch.setenv("PORTSCAN_ALERT_FORMAT", "ocsf")
    assert main(["replay", str(source), "--output", str(from_env)]) == 0
    capsys.readouterr()
    alerts = [orjson.loads(line) for line in sentinel.read_bytes().splitlines()]
    findings = [orjson.loads(line) for line in ocsf.read_bytes().splitlines()]
    assert len(alerts) >= 3 and len(findings) == len(alerts)
    assert [f["unmapped"] for f in findings] == alerts  # same alerts, same order
    assert findings == [to_ocsf(a) for a in alerts]
    assert from_env.read_bytes() == ocsf.read_bytes()
    validator = published_validator(OCSF_VERSION)
    for finding in findings:
        assert finding["class_uid"] == 2004 and finding["activity_id"] == 1
        assert list(validator.iter_errors(finding)) == []
        assert list(our_validator().iter_errors(finding)) == []
    with pytest.raises(SystemExit) as refused:  # argparse's usage error
        main(["replay", str(source), "--alert-format", "stix", "--output", str(ocsf)])
    assert refused.value.code == 2
    assert "sentinel or ocsf" in capsys.readouterr().err
