"""All configuration in one typed place: defaults, CLI flags and PORTSCAN_* environment variables.

Precedence: a CLI flag, else the environment variable `PORTSCAN_<NAME>`, else the default (the
published rule's parameters). This is the only module that reads the environment.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from streams.core.rule import (
    DEFAULT_BIN_MS,
    DEFAULT_MAX_SET_SIZE,
    DEFAULT_THRESHOLD,
    RuleConfigError,
    RuleParams,
)

ENV_PREFIX = "PORTSCAN_"
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the flag and the variable."""


def parse_duration_ms(text: str) -> int:
    """'10m', '120s', '24h', '1d', '500ms' or a bare number of seconds, to milliseconds."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 600s, 10m, 24h)")
    value, unit = m.groups()
    return round(float(value) * _UNITS_MS[unit or "s"])


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _opt(
    help_: str, parse: Callable[[str], Any] = str, metavar: str | None = None, secret: bool = False
) -> dict[str, Any]:
    return {"help": help_, "parse": parse, "metavar": metavar, "secret": secret}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of every command; each is flag `--name-with-dashes` and env `PORTSCAN_NAME`."""

    # Rule parameters (defaults: the published rule).
    threshold: int = field(
        default=DEFAULT_THRESHOLD,
        metadata=_opt("alert when a window uses at least this many ports", int, "N"),
    )
    bin: int = field(
        default=DEFAULT_BIN_MS, metadata=_opt("window (bin) size, e.g. 10m", parse_duration_ms, "DURATION")
    )
    max_set_size: int = field(
        default=DEFAULT_MAX_SET_SIZE,
        metadata=_opt("cap of every collected set, like the legacy makeset (0 = unlimited)", int, "N"),
    )
    url_plus: str = field(
        default="space",
        metadata=_opt(
            "url_decode reads '+' as a space (.NET, the default) or keeps it literal", str, "space|literal"
        ),
    )
    # Kafka and the worker.
    brokers: str = field(
        default="127.0.0.1:9092", metadata=_opt("Kafka bootstrap servers", str, "HOST:PORT,...")
    )
    app_id: str = field(
        default="iis-portscan", metadata=_opt("consumer group and prefix of internal topics", str, "ID")
    )
    input_topic: str = field(
        default="w3ciislog", metadata=_opt("topic of W3CIISLog JSON events", str, "TOPIC")
    )
    alert_topic: str = field(
        default="iis-portscan-alerts", metadata=_opt("topic the alerts are published to", str, "TOPIC")
    )
    dlq_topic: str = field(
        default="w3ciislog-dlq", metadata=_opt("dead-letter topic for bad input", str, "TOPIC")
    )

    def __post_init__(self) -> None:
        if self.url_plus not in ("space", "literal"):
            raise ConfigError(
                f"--url-plus / PORTSCAN_URL_PLUS must be 'space' or 'literal', got {self.url_plus!r}"
            )
        try:
            self.rule_params()
        except RuleConfigError as exc:
            raise ConfigError(str(exc)) from exc

    def rule_params(self) -> RuleParams:
        return RuleParams(
            bin_ms=self.bin,
            threshold=self.threshold,
            max_set_size=self.max_set_size,
            plus_as_space=self.url_plus == "space",
        )

    # ------------------------------------------------------------------ loading

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @staticmethod
    def env_name(name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
        """Declare the flags of the named settings on a (sub)command parser; defaults stay None."""
        by_name = {f.name: f for f in fields(cls)}
        for name in names:
            f = by_name[name]
            meta = f.metadata
            shown = "<secret>" if meta["secret"] else f.default
            parser.add_argument(
                cls.flag(name),
                dest=name,
                default=None,
                metavar=meta["metavar"],
                help=f"{meta['help']} [env {cls.env_name(name)}; default {shown}]",
            )

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from CLI values (strings), then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            source = cls.flag(f.name)
            if raw is None:
                raw = env.get(cls.env_name(f.name))
                source = cls.env_name(f.name)
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from exc
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
