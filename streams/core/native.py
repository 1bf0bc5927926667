"""Which hot path decodes a batch of records: the pure-Python core, or the native extension.

`--engine python|native|auto`. The native extension (`streams._native`, the Rust crate in native/, built
by `pip install .` when a Rust toolchain is present) decodes a batch of raw record values to the same
IISEvent values as `parse.single_event`, with the GIL released while it scans; every record it cannot
judge exactly goes to `single_event` itself (see native/src/lib.rs). So both engines give the same events,
hence the same state records and alerts: native and Python workers can share one store and changelog,
and a worker can switch at any restart. `auto` takes the native one when it is importable and passes its
self-check (`native_problem`), else the Python one; the choice and why is `Engine.why`, logged once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from streams.core.alerts import alert_sort_key
from streams.core.engine import PartitionEngine, Plan, StepResult, StreamParams
from streams.core.parse import single_event
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, WindowRecord, position

ENGINES = ("auto", "python", "native")

Value = bytes | str | None
Decode = Callable[[list[Any]], list[IISEvent | None]]
# A checkpoint's window records (key -> record) to their stored bytes, in order (core.checkpoint).
Encode = Callable[[dict[bytes, WindowRecord], RuleParams | None], dict[bytes, bytes]]


def python_decode(values: list[Any]) -> list[IISEvent | None]:
    """The reference: `single_event` of each value."""
    return [single_event(v) for v in values]


def python_encode(records: dict[bytes, WindowRecord], rule: RuleParams | None) -> dict[bytes, bytes]:
    """The reference: `WindowRecord.to_bytes(rule)` of each record."""
    return {key: rec.to_bytes(rule) for key, rec in records.items()}


def native_encode(records: dict[bytes, WindowRecord], rule: RuleParams | None) -> dict[bytes, bytes]:
    """`python_encode` by the native extension; a record that needs Python's rules (trimming a set,
    a port bitmap, shrinking to the record bound) is encoded by `to_bytes` itself."""
    encode = _native_module().encode_records
    if rule is None:
        return encode(records, 0, 1 << 62, WindowRecord.to_bytes)  # type: ignore[no-any-return]
    return encode(  # type: ignore[no-any-return]
        records, rule.max_set_size, rule.max_record_bytes, lambda rec: rec.to_bytes(rule)
    )


def self_check_records() -> dict[bytes, WindowRecord]:
    """Window records of every stored shape (and ones the native encoder passes on), for self-checks."""
    values = ("-", "a=A b", "W3SVC1", "Mozilla/5.0", "GET", "401.1", "Logon failed.", "8009030e", "x")
    odd = ("é\u2028\x7f", '\x00\x1f\b"\\', "😀", "", "GET", "200.0", "-", "0", "ok")
    out: dict[bytes, WindowRecord] = {}
    one = WindowRecord.first(1_767_268_800_000, 443, values, position(0, 5), False)
    out[b"1"] = one
    two = WindowRecord.first(1_767_268_800_000, None, values, position(0, 5), True)
    two.add(1_767_268_800_500, 80, odd, 128)
    two.first_time(position(1, 2**63))
    two.alerts_sent = 3
    out[b"2"] = two
    many = WindowRecord()
    for i in range(1_100):  # ports past the bitmap bound; sets past a small cap
        many.first_time(position(2, i))
        many.add(1_767_268_800_000 + i, i, tuple(f"{v}{i % 40}" for v in odd), 128)
    out[b"3"] = many
    out[b"4"] = WindowRecord()
    return out


_R = (
    b'{"TimeGenerated":"2026-01-01T10:00:00.1234567Z","cIP":"10.0.0.1","Computer":"web1","sIP":"10.1.1.1",'
    b'"sPort":443,"csMethod":"GET","csUriQuery":"a=%41+b","csUserName":"-","sSiteName":"W3SVC1",'
    b'"csUserAgent":"Mozilla/5.0","scStatus":"401","scSubStatus":"1","scWin32Status":"2148074254"'
)
# Records the self-check decodes both ways: common ones the native path claims, and ones it must pass on.
SELF_CHECK: tuple[Value, ...] = (
    _R + b"}",
    _R + b',"x":[1,2.5,{"y":null,"z":true}],"s":"\\u00e9\\ud83d\\ude00\\n"}',
    _R.replace(b"web1", b'w\\u00e9b\\"1') + b"}",
    _R.replace(b"web1", "wéb".encode()) + b"}",
    _R.replace(b'"sPort":443', b'"sPort":"443"') + b"}",
    _R.replace(b'"sPort":443', b'"sPort":443.0') + b"}",
    _R.replace(b'"sPort":443', b'"sPort":70000') + b"}",
    _R.replace(b'"csMethod":"GET"', b'"csMethod":null') + b"}",
    _R.replace(b"web1", b"w\\ud800") + b"}",
    _R.replace(b"web1", b"w\xff") + b"}",
    _R.replace(b"web1", b"w\xed\xa0\x80") + b"}",
    _R.replace(b"00.1234567Z", b"00+02:00") + b"}",
    _R.replace(b"2026-01-01", b"2026-02-30") + b"}",
    _R + b',"cIP":"10.0.0.2"}',
    _R + b',"deep":' + b"[" * 40 + b"]" * 40 + b"}",
    _R.replace(b"10.0.0.1", b"1" * 300) + b"}",
    b'{"records":[' + _R + b"}]}",
    _R + b"} x",
    b"[]",
    b"",
    None,
    _R.decode() + "}",
)


class NativePartitionEngine(PartitionEngine):
    """`PartitionEngine` with its per-event loops (`plan`'s keys and load list, `_apply`'s common
    branches, `_alert_touched`'s admit/LRU, `_close_bin`) in the native extension
    (`streams._native.Fold`), over the same objects. The records it makes are not tracked by the cycle
    collector (a record holds ints, strs and containers of them: never in a cycle), which saves the
    collector's passes over hundreds of thousands of live windows: most of what it gains.

    The native loop does only what the reference does in its common branches (a new window: as
    `WindowRecord.first`; an in-memory window: `first_time` for one source, `add`'s fast exits;
    `Enricher.values`' memo hit) and calls the Python methods for the rest; an event it does not take
    (a rejection, a loaded record) is the reference's loop body for that event (`_apply_range`); a batch it
    cannot judge (a lone surrogate in a key, a time past an i64, not a list) is the reference's."""

    __slots__ = ("_fold",)

    def __init__(self, params: StreamParams, meta: Meta | None = None, now_ms: int = 0) -> None:
        super().__init__(params, meta, now_ms)
        self._fold = _fold()

    def plan(self, batch: Sequence[tuple[int, IISEvent]]) -> Plan:
        bin_ms, watermark = self.params.rule.bin_ms, self.meta.watermark
        got = self._fold.plan(batch, bin_ms, watermark - bin_ms, self.open, self._spilled)
        if got is None:
            return super().plan(batch)
        keys, load = got
        return Plan(batch, keys, load, watermark)

    def _apply(
        self, plan: Plan, loaded: Mapping[bytes, bytes | WindowRecord | None], now_ms: int, out: StepResult
    ) -> dict[bytes, WindowRecord]:
        p = self.params
        bin_ms, cap = p.rule.bin_ms, p.rule.max_set_size
        watermark = self.meta.watermark
        touched: dict[bytes, WindowRecord] = {}

        def slow(index: int, offset: int, ev: IISEvent, key: bytes) -> bool:
            """The reference's loop body for one event (`_apply_range`); whether it was applied (not
            rejected, not a repeat)."""
            before = len(out.rejected), out.already_applied
            self._apply_range(plan, loaded, now_ms, out, touched, range(index, index + 1))
            return (len(out.rejected), out.already_applied) == before

        try:
            got = self._fold.apply(
                plan.batch,
                plan.keys,
                loaded,
                self.open,
                touched,
                self.enricher._values,
                self.enricher.values,
                slow,
                bin_ms,
                cap,
                watermark,
                now_ms + p.max_skew_ms,
                watermark - p.retention_ms - bin_ms,
                self.meta.max_event_ms,
            )
        except OverflowError:  # a bound past an i64, refused before any change
            got = None
        if got is None:
            return super()._apply(plan, loaded, now_ms, out)
        self.meta.max_event_ms, already = got
        out.already_applied += already
        return touched

    def _alert_touched(self, touched: dict[bytes, WindowRecord], out: StepResult) -> None:
        p = self.params
        rule, tenants = p.rule, p.tenant_thresholds
        early: list[dict[str, Any]] = []

        def late_alert(key: bytes, rec: WindowRecord) -> None:
            rec.alerts_sent += 1
            out.alerts.append(self._alert(key, rec, "late"))

        def early_alert(key: bytes, rec: WindowRecord) -> None:
            rec.alerts_sent = 1
            early.append(self._alert(key, rec, "early"))

        def slow(key: bytes, rec: WindowRecord) -> None:  # the reference's body for one window
            reached = rec.reaches(
                rule.threshold if tenants is None else tenants.of_key(key), rule.max_set_size
            )
            if rec.closed:
                if reached:
                    late_alert(key, rec)
                return
            if key not in self.open:
                self._admit(key, rec.first_ms - rec.first_ms % rule.bin_ms, rec)
            else:
                del self.open[key]
                self.open[key] = rec
            if reached and rec.alerts_sent == 0 and p.early:
                early_alert(key, rec)

        self._fold.touch(
            touched,
            self.open,
            self._by_end,
            rule.bin_ms,
            rule.max_set_size,
            rule.threshold if tenants is None else None,
            None if tenants is None else tenants.of_key,
            p.early,
            late_alert,
            early_alert,
            slow,
        )
        early.sort(key=alert_sort_key)
        out.alerts[:0] = early

    def _close_bin(
        self, keys: Iterable[bytes], closed: set[bytes] | None, finals: list[dict[str, Any]]
    ) -> None:
        rule, tenants = self.params.rule, self.params.tenant_thresholds

        def final_alert(key: bytes, rec: WindowRecord) -> None:
            rec.alerts_sent += 1
            finals.append(self._alert(key, rec, "final"))

        self._fold.close(
            keys,
            self.open,
            closed,
            rule.max_set_size,
            rule.threshold if tenants is None else None,
            None if tenants is None else tenants.of_key,
            self.params.final,
            final_alert,
        )


@cache
def _fold() -> Any:
    return _native_module().Fold(IISEvent, WindowRecord)


@cache
def _native_module() -> Any:
    import streams._native

    return streams._native


def _native_decode() -> Decode:
    decoder = _native_module().Decoder(IISEvent, single_event)
    return decoder.decode  # type: ignore[no-any-return]


@cache
def native_problem() -> str | None:
    """Why the native engine cannot be used here (None: it can): not built, or its self-check failed."""
    try:
        _native_module()
    except ImportError as exc:
        return f"the native extension is not built ({exc})"
    decoder = _native_module().Decoder(IISEvent, single_event)
    values = list(SELF_CHECK)
    if decoder.decode(values) != python_decode(values):
        return "the native extension failed its self-check (different events from the Python core)"
    if not decoder.claimed:
        return "the native extension claimed no record of its self-check"
    for rule in (None, RuleParams(), RuleParams(max_set_size=4, threshold=2)):
        if native_encode(self_check_records(), rule) != python_encode(self_check_records(), rule):
            return "the native extension failed its self-check (different record bytes from the Python core)"
    try:
        _fold()
    except TypeError as exc:  # IISEvent or WindowRecord without the plain slots the loop sets
        return f"the native extension cannot fold these records ({exc})"
    return None


@dataclass(frozen=True, slots=True)
class Engine:
    """The chosen hot path: its name (python or native), why, and how it decodes a batch."""

    name: str
    why: str
    decode: Decode
    encode: Encode = python_encode
    partition: type[PartitionEngine] = PartitionEngine  # a partition's engine (its per-event loop)


class EngineUnavailable(RuntimeError):
    """`--engine native` where the native extension cannot be used."""


def choose(engine: str = "auto") -> Engine:
    """The engine `--engine` asks for; `auto`: native when usable, else python."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "python":
        return Engine("python", "asked for (--engine python)", python_decode)
    problem = native_problem()
    if problem is None:
        why = f"{'asked for' if engine == 'native' else 'auto'}: built and self-checked"
        return Engine("native", why, _native_decode(), native_encode, NativePartitionEngine)
    if engine == "native":
        raise EngineUnavailable(f"--engine native: {problem}")
    return Engine("python", f"auto: {problem}", python_decode)


def claimer(engine: str) -> Callable[[bytes], IISEvent | None]:
    """For readers of files (replay): a line's first reading, as the detector reads a message first
    (`single_event`, by the named engine's decoder): its event, else None (the reader's own path then
    reads it, as the detector's does). So replay reads every line as the stream would, with either
    engine: a record that `single_event` takes but a whole-record JSON parse refuses (a number past a
    double's range in a column the rule does not read) is an event in both."""
    if engine != "native":
        return single_event
    decode = _native_module().Decoder(IISEvent, single_event).decode

    def claim(line: bytes) -> IISEvent | None:
        return decode([line])[0]  # type: ignore[no-any-return]

    return claim


def encoder_for(engine: str) -> Encode:
    """The record encoder of the named engine (python or native), for tests and benchmarks."""
    if engine not in ("python", "native"):
        raise ValueError(f"engine must be python or native, got {engine!r}")
    return native_encode if engine == "native" else python_encode


def decoder_for(engine: str) -> Decode:
    """A fresh batch decoder of the named engine (python or native), for tests and benchmarks."""
    if engine == "python":
        return python_decode
    if engine == "native":
        return _native_decode()
    raise ValueError(f"engine must be python or native, got {engine!r}")
