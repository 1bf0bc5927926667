"""Wire contracts: every schema is valid, its example validates, and real records match it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from streams.core.aggregate import WindowAgg
from streams.core.alerts import RULE_COLUMNS, build_alert
from streams.core.entities import ADDED, add_entities
from streams.core.parse import event_from_record
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.windows import WindowKey
from streams.io.sample import Workload, generate

pytestmark = pytest.mark.contract

SCHEMAS = resources.files("streams") / "schemas"
NAMES = sorted(p.name for p in SCHEMAS.iterdir() if p.name.endswith(".schema.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_top_level_schemas_folder_is_the_packaged_one() -> None:
    top = Path(__file__).resolve().parents[2] / "schemas"
    assert sorted(p.name for p in top.glob("*.schema.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_and_example_validates(name: str) -> None:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    example = SCHEMAS / "examples" / name.replace(".schema.json", ".example.json")
    assert example.is_file(), f"{name} has no example"
    validator(name).validate(json.loads(example.read_text()))


def test_alert_schema_lists_rule_columns_in_order() -> None:
    schema = load("alert.schema.json")
    assert tuple(schema["required"][:16]) == RULE_COLUMNS
    assert tuple(schema["properties"])[:16] == RULE_COLUMNS


def test_built_alerts_validate_and_match_schema_properties() -> None:
    v = validator("alert.schema.json")
    key = WindowKey(1_767_269_400_000, "203.0.113.9", "WEB01", "10.0.0.11")
    agg = WindowAgg()
    for p in range(200):
        agg.add(key.start_ms + p, p, ("-", "a b", "W3SVC1", "ua", "GET", "404.0", "See", "2", "x"), 128)
    alert = build_alert(key, agg, RuleParams())
    v.validate(alert)
    # the stream's Revision and Phase; --allowlist's version; --alert-entities' fields; --tenant-field's
    optional = {"Revision", "Phase", "AllowlistVersion", "TenantId", *ADDED}
    assert set(alert) == set(load("alert.schema.json")["properties"]) - optional
    v.validate({**alert, "Revision": 2, "Phase": "final"})
    v.validate({**add_entities(dict(alert)), "AllowlistVersion": "sha256:0123456789abcdef"})
    tenants = build_alert(key._replace(tenant="contoso"), agg, RuleParams())
    assert list(tenants)[-1] == "TenantId" and tenants["TenantId"] == "contoso"
    v.validate(add_entities(tenants))
    with pytest.raises(jsonschema.ValidationError):
        v.validate({**alert, "TenantId": ""})
    with pytest.raises(jsonschema.ValidationError):
        v.validate({**alert, "Revision": 2, "Phase": "closed"})


def test_generated_input_validates_and_parses() -> None:
    v = validator("w3ciislog.schema.json")
    for record in generate(Workload(events=500, seed=2)):
        v.validate(record)
        assert isinstance(event_from_record(record), IISEvent)


def test_schema_rejects_an_alert_without_ports() -> None:
    example = json.loads((SCHEMAS / "examples" / "alert.example.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        validator("alert.schema.json").validate({**example, "portCount": 0})


def test_dead_letters_validate() -> None:
    from streams.core.deadletter import dead_letter
    from streams.core.records import ParseError, Reason

    v = validator("deadletter.schema.json")
    for reason in Reason:
        v.validate(dead_letter(ParseError(reason, "x"), b"\xff\x00", None, "t", 0, 5, None, 0))
        v.validate(dead_letter(ParseError(reason, "x"), b"{}", b"k", "t", 1, 6, 3, 1_767_269_400_000))
