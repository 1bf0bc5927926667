"""The allowlist file: read at start, and again whenever it changes on disk (checked by the caller)."""

from __future__ import annotations

import os

from streams.core.allowlist import AllowlistError, Entry, parse_text

MAX_FILE_BYTES = 64 * 1024 * 1024  # an allowlist larger than this is a mistake, not a list


class AllowlistFile:
    """One allowlist file and the signature (inode, size, mtime) of the version last read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.signature: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        """The file on disk is not the one last read (written in place, replaced, or removed)."""
        return self._stat() != self.signature

    def read(self) -> list[Entry]:
        """Its entries; AllowlistError naming the file (and line) when it cannot be read or used. The
        signature is taken before reading, so a write during the read is seen by the next check."""
        return parse_text(self.read_text(), self.path)

    def read_text(self) -> str:
        """Its text (AllowlistError when it cannot be read), the signature taken before reading."""
        signature = self._stat()
        try:
            if signature is not None and signature[1] > MAX_FILE_BYTES:
                raise AllowlistError(f"{self.path}: larger than {MAX_FILE_BYTES} bytes")
            with open(self.path, encoding="utf-8-sig") as fh:
                text = fh.read()
        except OSError as exc:
            self.signature = signature
            raise AllowlistError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            self.signature = signature
            raise AllowlistError(f"{self.path}: not UTF-8 text") from None
        self.signature = signature
        return text
