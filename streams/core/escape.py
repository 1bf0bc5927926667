"""Strings the detected client controls, made harmless for the log line, the terminal and the JSON line.

The client writes the user agent, the query, the user name, even the Computer of a W3C line; operators read
them in a terminal (`iis-portscan alerts --pretty`, the worker's text log) and in SIEM consoles. A newline
forges a log line; ESC sequences (`\\x1b]0;...\\x07`, `\\x1b[2J`) rewrite the terminal; C1 controls (U+0080-
U+009F, U+009B is CSI) do the same on terminals that honour them; bidi overrides (U+202A-U+202E, U+2066-
U+2069) reorder what is shown; U+2028/U+2029 break lines in JavaScript viewers.

- `printable(text)`: for text output (logs, terminals, stderr). Every character that is not printable
  (`str.isprintable`: controls, format characters such as the bidi overrides, line and paragraph
  separators, unassigned code points, and spaces other than ' ') becomes visible text: `\\x1b`, `\\u202e`.
  Printable text (nearly all) is returned as it is, after one C-speed check.
- `escape_json(data)` / `dumps(obj)`: for JSON output (alerts and dead letters on Kafka, `replay`, JSON
  logs). orjson already escapes C0 controls; this escapes what it leaves raw: DEL, C1 controls, U+2028/
  U+2029 and the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) as `\\uXXXX`. The
  JSON stays valid and decodes to the same value. Only output holding such a byte sequence is rewritten:
  ASCII output (nearly all) costs one `in` and one `isascii()`; other output a few more byte scans, and a
  regular expression only when it holds one of the lead bytes 0xC2, 0xD8 or 0xE2.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# The UTF-8 forms of the characters JSON output escapes (orjson's output is valid UTF-8, so these byte
# sequences are exactly those characters, and they can only occur inside JSON strings).
_JSON_UNSAFE = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def _json_escape(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match.group().decode())


def escape_json(data: bytes) -> bytes:
    """orjson output with DEL, C1, line/paragraph separators and bidi controls as `\\uXXXX`."""
    if b"\x7f" not in data:
        if data.isascii():
            return data
        # the lead bytes of every escaped character: memchr-speed scans before the regular expression
        if b"\xc2" not in data and b"\xe2" not in data and b"\xd8" not in data:
            return data
        if _JSON_UNSAFE.search(data) is None:
            return data
    return _JSON_UNSAFE.sub(_json_escape, data)


def dumps(obj: Any, option: int = 0) -> bytes:
    """`orjson.dumps` for output that people or other systems read (see the module docstring)."""
    return escape_json(orjson.dumps(obj, option=option))


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every non-printable character written as a visible escape (`\\n` -> `\\x0a`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _visible(c) for c in text)


def printable_lines(text: str) -> str:
    """Multi-line text we produced (a traceback) holding strings we did not: each line made printable, and
    every line after the first indented, so no part of it can pass for a log line of its own."""
    return "\n  ".join(printable(line) for line in text.split("\n"))
