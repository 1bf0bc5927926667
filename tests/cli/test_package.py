"""`pip install .` into a clean virtualenv gives a working command that needs nothing from the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _without_cargo(path: str) -> str:
    """PATH without the directories that hold a cargo (a machine with no Rust toolchain)."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and not (Path(d) / "cargo").exists())


@pytest.mark.slow
@pytest.mark.parametrize("toolchain", ["cargo", "none"])
def test_clean_install_runs_outside_the_tree(tmp_path: Path, toolchain: str) -> None:
    """With cargo on PATH the native extension is built and `--engine auto` takes it; without one the
    install still succeeds, pure Python, and auto falls back (saying why)."""
    env = dict(os.environ)
    if toolchain == "none":
        env["PATH"] = _without_cargo(env.get("PATH", ""))
    elif shutil.which("cargo") is None:
        pytest.skip("no cargo on PATH: the native build cannot be tried here")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, timeout=900, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = (
        "import streams, importlib.resources as r, json;"
        "s = r.files('streams') / 'schemas';"
        "print(streams.__file__);"
        "print(sorted(p.name for p in s.iterdir() if p.name.endswith('.json')));"
        "json.loads((s / 'examples' / 'alert.example.json').read_text());"
        "from streams.core.native import choose; e = choose('auto'); print(e.name, '|', e.why)"
    )
    out = subprocess.run(
        [str(py), "-c", probe], cwd=work, capture_output=True, text=True, check=True, timeout=60
    )
    where, schemas, engine = out.stdout.splitlines()
    assert str(env_dir) in where and str(ROOT) not in where
    assert "alert.schema.json" in schemas and "w3ciislog.schema.json" in schemas
    if toolchain == "cargo":
        assert engine.startswith("native |"), engine
    else:
        assert engine.startswith("python | auto: the native extension is not built"), engine
    lines = [
        orjson.dumps(
            {
                "TimeGenerated": f"2026-01-01T12:00:{i:02d}Z",
                "cIP": "198.51.100.1",
                "Computer": "W",
                "sIP": "10.0.0.1",
                "sPort": 1000 + i,
            }
        )
        for i in range(30)
    ]
    exe = env_dir / "bin" / "iis-portscan"
    proc = subprocess.run(
        [str(exe), "replay", "-"],
        input=b"\n".join(lines),
        cwd=work,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["portCount"] == 30
