"""Log output: text for people, or one JSON object per line for log shippers (`--log-format json`)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from streams.core.timefmt import format_iso_ms

TEXT_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


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
        return orjson.dumps(out, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for the worker (faust's Worker applies it): one stderr handler in `fmt`."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
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
