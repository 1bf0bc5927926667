"""Dependency floors and the lock file (issue 23): no version with a known hole can be installed, and
`make setup` installs exactly the hashed versions the tests ran with.

- orjson < 3.9.15 overflows the C stack on deeply nested input (CVE-2024-27454): a 400 KB Kafka record,
  parsed before its offset is committed, segfaults the worker again on every restart.
  orjson < 3.11.5 does the same in dumps (CVE-2025-67221).
- redis-py < 6.0 does not check the server's host name on rediss:// unless asked; 6.1.0 changed
  RedisSSLContext's default by mistake (reverted in 6.2.0). The store asks for the check explicitly
  anyway (tests/unit/state/test_redis_options.py).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.contract
ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
VULNERABLE = {"orjson": ("3.9.14", "3.11.4"), "redis": ("5.0.8", "5.3.1", "6.1.0")}
FIXED = {"orjson": "3.11.5", "redis": "6.2.0"}


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, listed)}


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes) of requirements.lock."""
    out: dict[str, tuple[Version, list[str]]] = {}
    text = LOCK.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"not a hashed pin: {line[:80]}"
        name, version, hashes = match.groups()
        out[canonicalize_name(name)] = (Version(version), hashes.split())
    return out


def test_floors_exclude_the_vulnerable_releases() -> None:
    deps = requirements()
    for name, versions in VULNERABLE.items():
        spec = deps[name].specifier
        assert not [v for v in versions if spec.contains(v)], f"{name}{spec} admits {versions}"
        assert spec.contains(FIXED[name]), f"{name}{spec} refuses the fixed {FIXED[name]}"


def test_lock_pins_every_dependency_with_hashes_within_the_ranges() -> None:
    pins = locked()
    wanted = {**requirements(), **requirements("test")}
    for name, requirement in wanted.items():
        assert name in pins, f"{name} is not in requirements.lock"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version}"
        assert hashes
    for name in VULNERABLE:
        assert pins[name][0] >= Version(FIXED[name])


def test_make_setup_installs_the_lock_then_the_package_without_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements.lock" in makefile
    assert re.search(r"^STAMP := .*cat pyproject\.toml .*\$\(LOCK\)", makefile, re.M)
    assert re.search(r"^\$\(STAMP\): pyproject\.toml .*\$\(LOCK\)", makefile, re.M)
    assert "pip install -q --require-hashes -r $(LOCK)" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    assert "-e '.[test]'" not in makefile
