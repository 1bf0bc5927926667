"""Log output: text for people, or one JSON object per line for log shippers (`--log-format json`).

Log messages carry strings the detected client controls (a Computer, a topic's record, an exception's
text): both formats escape what could forge a line or drive the terminal (see streams.core.escape). The
text format writes the message on one line whatever it holds; a traceback keeps its lines, each
indented, so that no line of it can pass for a log line.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from streams.core.escape import escape_json, printable, printable_lines
from streams.core.timefmt import format_iso_ms

TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the message made printable (one line) and the exception and stack escaped."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or TEXT_FORMAT, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        cached = record.exc_text  # another handler's formatter may have cached its unescaped traceback
        record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        for name in ("name", "levelname"):  # a logger name or level a library built from input
            setattr(record, name, printable(str(getattr(record, name))))
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return "  " + printable_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return "  " + printable_lines(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """Stable keys: time (ISO-8601 UTC), level, logger, message; exception and stack when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": format_iso_ms(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return escape_json(orjson.dumps(out, default=str)).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for the worker (faust's Worker applies it): one stderr handler in `fmt`."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"()": f"{__name__}.TextFormatter"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {
            "main": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level.upper(), "handlers": ["main"]},
    }


def setup(level: str, fmt: str) -> None:
    """Logging before the worker starts (start-up checks, topic creation)."""
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
