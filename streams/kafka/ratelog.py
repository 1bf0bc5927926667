"""Log lines about something that can happen per fetch or per batch, at most once per interval per kind.

An operator must see that the worker dropped or skipped something (a fetch not handed on at a rebalance,
events already applied, windows that should have closed), but a condition that repeats per batch must
not flood the log: each kind logs at most once per `interval_s`, with the count since its last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """`note(kind, n, message, *args)`: counts `n`; logs the message (with the count since the last line
    of this kind appended) when the kind's last line is `interval_s` old."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 30.0,
        level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.level = level
        self.clock = clock
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(self, kind: str, n: int, message: str, *args: object) -> bool:
        """Count `n` of `kind`; True when a line was logged."""
        self._since[kind] = self._since.get(kind, 0) + n
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[kind] = now
        total, self._since[kind] = self._since[kind], 0
        self.logger.log(self.level, message + " (%d since the last such line)", *args, total)
        return True
