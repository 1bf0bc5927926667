"""Unbounded replay input (issue 23, item 9): a gzip bomb of one endless line, and one that opens a JSON
document that never ends, are reported (too-large) and skipped; the run goes on to the next file; the
process's peak RSS stays bounded (measured in a child process: its VmHWM, not a time)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

INFLATED = 300 * 1024 * 1024  # what each bomb inflates to (each a few hundred KB of gzip)
RSS_LIMIT_MIB = 256  # the defaults hold at most a 1 MiB line or a 64 MiB document; before: > 300 MiB

# The child's own peak: VmHWM of its address space. (getrusage's ru_maxrss is no good here: Linux carries
# the forking parent's peak over exec, so a child of a large pytest process would report pytest's.)
CHILD = r"""
import sys
from streams.cli import main
code = main(["replay", *sys.argv[1:]])
with open("/proc/self/status") as fh:
    hwm = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
print("maxrss_kib", hwm, "code", code)
"""


def bomb(path: Path, head: bytes, chunk: bytes) -> Path:
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(head)
        block = chunk * (1024 * 1024 // len(chunk))
        for _ in range(INFLATED // len(block)):
            fh.write(block)
    assert path.stat().st_size < 2 * 1024 * 1024
    return path


def scan(path: Path) -> Path:
    records = [
        {"TimeGenerated": f"2026-01-01T12:00:{p % 60:02d}Z", "cIP": "198.51.100.7", "Computer": "WEB01",
         "sIP": "10.0.0.11", "sPort": 1000 + p}
        for p in range(40)
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("name", "head", "chunk"),
    [
        ("one-line.jsonl.gz", b"", b"A"),  # one line of 300 MiB
        ("document.json.gz", b"[\n", b'{"a":1},\n'),  # a document that does not end
    ],
)
def test_a_gzip_bomb_is_reported_skipped_and_rss_stays_bounded(
    tmp_path: Path, name: str, head: bytes, chunk: bytes
) -> None:
    source = bomb(tmp_path / name, head, chunk)
    after = scan(tmp_path / "scan.jsonl")
    out = tmp_path / "alerts.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(after), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    rss_mib = int(words[words.index("maxrss_kib") + 1]) / 1024
    assert int(words[words.index("code") + 1]) == 0
    assert rss_mib < RSS_LIMIT_MIB, f"peak RSS {rss_mib:.0f} MiB"
    assert "too-large" in done.stderr, done.stderr[-2000:]
    assert "(too-large 1)" in done.stderr.splitlines()[-1], done.stderr[-2000:]  # counted once
    assert len(out.read_bytes().splitlines()) == 1  # the next file was read: its scan alerts
