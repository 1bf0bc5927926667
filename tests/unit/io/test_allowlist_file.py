"""streams.io.allowlist_file: the file is read with its signature, a change on disk is seen (written in
place, replaced, removed), and what cannot be read is an AllowlistError naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.core.allowlist import AllowlistError
from streams.io.allowlist_file import AllowlistFile


def test_entries_are_read_and_a_change_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "allow.csv"
    path.write_text("\ufefffield,value,reason\ncIP,198.51.100.7,scanner we run\n", encoding="utf-8")
    allow = AllowlistFile(str(path))
    assert allow.changed()  # never read
    (entry,) = allow.read()
    assert (entry.field, entry.value, entry.reason) == ("cIP", "198.51.100.7", "scanner we run")
    assert not allow.changed()
    path.write_text("field,value\ncIP,10.0.0.0/8\nComputer,WEB09\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse clock
    assert allow.changed()
    assert [e.id for e in allow.read()] == ["cIP:10.0.0.0/8", "Computer:WEB09"]
    path.unlink()
    assert allow.changed()


def test_an_unreadable_file_is_an_error_naming_it_and_not_read_again_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "allow.csv"
    allow = AllowlistFile(str(path))
    with pytest.raises(AllowlistError, match=f"{path}: cannot read"):
        allow.read()
    assert not allow.changed()  # still missing: the same (absent) version
    path.write_bytes(b"field,value\ncIP,\xff\n")
    assert allow.changed()
    with pytest.raises(AllowlistError, match="not UTF-8"):
        allow.read()
