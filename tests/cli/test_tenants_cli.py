"""`replay --tenant-field` (and --tenant-default, --tenant-thresholds, an allowlist's tenant column) as a
user runs it: one file holding two tenants' copies of the same traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli import main
from streams.io.sample import Workload, generate


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(one tenant's file without TenantId, both tenants' file: each record twice, TenantId a and b)."""
    records = list(generate(Workload(events=6000, seed=7, span_ms=3_600_000)))
    assert all(r.pop("TenantId") for r in records)  # the sample carries Azure Monitor's TenantId
    folder = tmp_path_factory.mktemp("tenants")
    one = folder / "one.jsonl"
    one.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    both = folder / "both.jsonl"
    both.write_bytes(
        b"".join(
            orjson.dumps({**r, "TenantId": t}, option=orjson.OPT_APPEND_NEWLINE)
            for r in records
            for t in "ab"
        )
    )
    return one, both


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, [orjson.loads(line) for line in out.splitlines()], err


def without_identity(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alert.items() if k not in ("AlertId", "TenantId")}


def test_each_tenant_equals_its_own_replay_and_tenants_never_mix(
    two_tenants: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, both = two_tenants
    code, alone, _ = replay(capsys, str(one))
    assert code == 0 and alone
    code, mixed, _ = replay(capsys, str(both))  # no tenants: each window counted twice
    assert code == 0 and all("TenantId" not in a for a in mixed)
    assert sorted(a["ConnectionsCount"] for a in mixed) == sorted(2 * a["ConnectionsCount"] for a in alone)
    code, split, err = replay(capsys, str(both), "--tenant-field", "field:TenantId")
    assert code == 0 and "0 bad records" in err
    for tenant in "ab":
        mine = [a for a in split if a["TenantId"] == tenant]
        assert [without_identity(a) for a in mine] == [without_identity(a) for a in alone]
    ids = {a["AlertId"] for a in split}
    assert len(ids) == 2 * len(alone) and not ids & {a["AlertId"] for a in alone}
    # a fixed tenant over the one-tenant file: the same windows, that tenant's AlertIds
    code, fixed, _ = replay(capsys, str(one), "--tenant-field", "fixed:a")
    assert [a["AlertId"] for a in fixed] == [a["AlertId"] for a in split if a["TenantId"] == "a"]


def test_events_without_a_tenant_are_bad_records_unless_a_default_is_set(
    two_tenants: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, _ = two_tenants
    code, alerts, err = replay(capsys, str(one), "--tenant-field", "field:TenantId")
    assert (
        code == 0
        and alerts == []
        and "tenant-missing" in err
        and "6000 bad records (tenant-missing 6000)" in err
    )
    code, alerts, _ = replay(capsys, str(one), "--tenant-field", "field:TenantId", "--tenant-default", "a")
    assert alerts and {a["TenantId"] for a in alerts} == {"a"}


def test_per_tenant_thresholds_and_allowlist_rows(
    two_tenants: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, both = two_tenants
    _, split, _ = replay(capsys, str(both), "--tenant-field", "field:TenantId")
    thresholds = tmp_path / "thresholds.csv"
    thresholds.write_text("tenant,threshold\nb,100\n")
    _, strict, _ = replay(
        capsys, str(both), "--tenant-field", "field:TenantId", "--tenant-thresholds", str(thresholds)
    )
    want = [a for a in split if a["TenantId"] == "a" or a["portCount"] >= 100]
    assert [a["AlertId"] for a in strict] == [a["AlertId"] for a in want]
    assert {a["Parameters"]["PortThreshold"] for a in strict} <= {30, 100} and len(strict) < len(split)
    top = split[0]["cIP"]
    allowlist = tmp_path / "allowlist.csv"
    allowlist.write_text(f"field,value,reason,tenant\ncIP,{top},pen test,a\n")
    _, kept, err = replay(
        capsys, str(both), "--tenant-field", "field:TenantId", "--allowlist", str(allowlist)
    )
    assert [a["AlertId"] for a in kept] == [
        a["AlertId"] for a in split if not (a["cIP"] == top and a["TenantId"] == "a")
    ]
    assert any(a["cIP"] == top and a["TenantId"] == "b" for a in kept)
    assert f"{len(split) - len(kept)} allowlisted" in err


def test_tenant_settings_that_cannot_work_are_refused(
    two_tenants: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, _ = two_tenants
    assert main(["replay", str(one), "--tenant-field", "header:X-Tenant"]) == 2
    assert "files carry no Kafka headers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["replay", str(one), "--tenant-field", "TenantId"])
    assert "header:NAME, field:PATH or fixed:VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["replay", str(one), "--tenant-thresholds", str(tmp_path / "t.csv")])
    assert "needs --tenant-field" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("tenant,threshold\na,0\n")
    assert main(["replay", str(one), "--tenant-field", "fixed:a", "--tenant-thresholds", str(bad)]) == 2
    assert f"{bad}:2: threshold must be" in capsys.readouterr().err


def test_notifications_are_per_tenant(two_tenants: tuple[Path, Path], tmp_path: Path) -> None:
    _, both = two_tenants
    notes = tmp_path / "notes.jsonl"
    assert main(["replay", str(both), "--tenant-field", "field:TenantId", "--notify", str(notes),
                 "--output", str(tmp_path / "a.jsonl")]) == 0  # fmt: skip
    pages = [orjson.loads(line) for line in notes.read_bytes().splitlines()]
    pages = [p for p in pages if p["Kind"] == "page"]
    by_tenant = {t: sorted(p["Entity"]["cIP"] for p in pages if p["Entity"]["TenantId"] == t) for t in "ab"}
    assert by_tenant["a"] and by_tenant["a"] == by_tenant["b"]


def test_produce_keys_a_tenants_events_by_tenant_first(two_tenants: tuple[Path, Path]) -> None:
    import io

    from streams.cli.produce import messages
    from streams.core.tenant import TenantSpec
    from streams.io.sources import SourceOptions

    _, both = two_tenants
    options = SourceOptions(tenant=TenantSpec("field", "TenantId"))
    sent = list(messages(str(both), options, io.StringIO()))
    first = orjson.loads(both.read_bytes().splitlines()[0])
    assert sent[0] == (f"a|{first['cIP']}|{first['Computer']}|{first['sIP']}".encode(), orjson.dumps(first))
    assert {key.split(b"|")[0] for key, _ in sent if key} == {b"a", b"b"}
    plain = list(messages(str(both), SourceOptions(), io.StringIO()))
    assert plain[0][0] == f"{first['cIP']}|{first['Computer']}|{first['sIP']}".encode()


def test_sweep_counts_each_tenants_windows_and_clients(
    two_tenants: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    one, both = two_tenants

    def table(*args: str) -> list[list[str]]:
        assert main(["replay", *args, "--sweep", "threshold=20,30"]) == 0
        return [line.split() for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]

    alone = table(str(one))
    split = table(str(both), "--tenant-field", "field:TenantId")
    assert alone and len(split) == len(alone)
    for a, s in zip(alone, split):
        assert s[:2] == a[:2] and [int(x) for x in s[2:]] == [2 * int(x) for x in a[2:]]
