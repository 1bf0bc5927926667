"""The native engine against the Python core, its reference: the same events, hence the same state bytes,
alerts and dead letters, whatever the input (core.native, native/src/lib.rs).

Skipped, with the reason, only where the extension is not built (no Rust toolchain at install); a built
extension that gives a different answer fails here, and `--engine auto` would not pick it.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.core import native
from streams.core.engine import PartitionEngine, StreamParams
from streams.core.parse import single_event
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import Meta, WindowRecord, encode_writes, position
from streams.core.tenant import TenantThresholds
from streams.core.windows import META_KEY, key_start_ms
from streams.io.sample import Workload, generate
from streams.kafka.detector import Detector
from streams.kafka.publisher import Publisher
from streams.state.memory import MemoryStore
from tests.harness import Msg, RecordingProducer

try:
    import streams._native as _built
except ImportError as exc:  # pragma: no cover - depends on the install
    _built = None
    WHY = f"the native extension is not built (no usable Rust toolchain at install?): {exc}"
else:
    WHY = ""

pytestmark = pytest.mark.skipif(_built is None, reason=WHY)

DATA = Path(__file__).resolve().parents[1] / "data"
COLUMNS = (
    "TimeGenerated",
    "cIP",
    "Computer",
    "sIP",
    "sPort",
    "csMethod",
    "csUriQuery",
    "csUserName",
    "sSiteName",
    "csUserAgent",
    "scStatus",
    "scSubStatus",
    "scWin32Status",
)


def fresh() -> Any:
    assert _built is not None
    return _built.Decoder(native.IISEvent, single_event)


def same(values: list[Any]) -> Any:
    """Decode both ways; the answers must be equal. Returns the native decoder (its counters)."""
    decoder = fresh()
    got = decoder.decode(values)
    assert got == native.python_decode(values)
    assert len(got) == len(values)
    return decoder


# ------------------------------------------------------------------ generated payloads

ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # surrogates too
SHORT_TEXT = st.text(ANY_CHAR, max_size=12) | st.sampled_from(["", "-", "GET", "200", "0", "é", "😀"])
TEXT = SHORT_TEXT | st.text(ANY_CHAR, min_size=250, max_size=260) | st.text(max_size=3000)


def iso_times() -> st.SearchStrategy[str]:
    """TimeGenerated in the forms seen, and near misses (offsets, no seconds, bad dates, years < 1970)."""
    year = st.sampled_from([1969, 1970, 2000, 2024, 2026, 2100, 9999, 10])
    parts = st.tuples(
        year,
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from(["", ".", ".1", ".12", ".123", ".1234567", ",5", ".٣"]),
        st.sampled_from(["Z", "z", "", "+02:00", "-0130", "+05", "Z ", "ZZ"]),
        st.sampled_from(["T", "t", " ", "_"]),
    )
    made = parts.map(
        lambda p: f"{p[0]:04d}-{p[1]:02d}-{p[2]:02d}{p[8]}{p[3]:02d}:{p[4]:02d}:{p[5]:02d}{p[6]}{p[7]}"
    )
    return made | st.sampled_from(["2026-01-01T10:00Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", ""])


JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON_ANY = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)
PORT = (
    st.integers(0, 65535)
    | st.integers(-5, 10**6)
    | st.sampled_from(["443", " 80", "0443", 443.0, 1e3, None, True])
)
VALUE = TEXT | JSON_ANY


def _enc(value: Any, style: int) -> str:
    """A JSON value in one of several spellings: escaped non-ASCII (surrogates as \\u escapes, lone ones
    too), raw UTF-8, or with every character of a string escaped."""
    if style == 2 and type(value) is str:
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in value) + '"'
    return json.dumps(value, ensure_ascii=style == 0, allow_nan=True)


SAFE_CHAR = st.characters(exclude_categories=("Cs",))
SAFE_TEXT = (
    st.text(SAFE_CHAR, max_size=12)
    | st.sampled_from(["", "-", "GET", "200", "0", "é", "😀", "a=%41+b"])
    | st.text(SAFE_CHAR, min_size=250, max_size=260)
)
CLEAN_TIME = st.tuples(
    st.datetimes(),
    st.sampled_from(["", ".1", ".12", ".123", ".1234567", ",5"]),
    st.sampled_from(["Z", "z", ""]),
    st.sampled_from(["T", "t", " "]),
).map(lambda p: p[0].strftime(f"%Y-%m-%d{p[3]}%H:%M:%S") + p[1] + p[2])


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A W3CIISLog object as bytes: in about half, every column of its usual type (what the native path
    claims, in various spellings); in the rest, columns sometimes of other types, missing, duplicated or
    reordered; extra fields; varied spacing and escaping."""
    clean = draw(st.booleans())
    fields: list[tuple[str, Any]] = []
    for name in COLUMNS:
        if not clean and draw(st.integers(0, 30)) == 0:
            continue  # missing
        if name == "TimeGenerated":
            value: Any = draw(CLEAN_TIME if clean else iso_times() | CLEAN_TIME | VALUE)
        elif name == "sPort":
            value = draw(st.integers(0, 65535) if clean else PORT)
        elif clean:
            value = draw(SAFE_TEXT)
        else:
            value = draw(TEXT if draw(st.integers(0, 15)) else VALUE)
        fields.append((name, value))
    for _ in range(draw(st.integers(0, 3))):
        fields.append((draw(st.sampled_from(["x", "records", "cip", *COLUMNS]) | TEXT), draw(VALUE)))
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    style = draw(st.integers(0, 2))
    space = draw(st.sampled_from(["", " ", "\n\t ", "\r\n"]))
    body = ("," + space).join(f"{_enc(k, min(style, 1))}{space}:{space}{_enc(v, style)}" for k, v in fields)
    text = space + "{" + space + body + space + "}" + space
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate unescaped: invalid UTF-8 (CESU)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A payload with bytes flipped, inserted, deleted or cut: invalid UTF-8, broken escapes, truncation."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 4))
        junk = draw(
            st.sampled_from(
                [
                    b"\xff",
                    b"\xed\xa0\x80",
                    b"\xc0\x80",
                    b"\xe2\x82",
                    b"\\",
                    b"\\u",
                    b"\\ud800",
                    b'"',
                    b"\x00",
                    b"\n",
                    b"{",
                    b"]",
                    b",",
                ]
            )
            | st.binary(max_size=3)
        )
        if op == 0 and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            data[at:at] = junk
        elif op == 2:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == 3:
            del data[at:]
        else:
            data[at:at] = b"[" * 40 + b"]" * 40 if draw(st.booleans()) else b'{"a":' * 40 + b"1" + b"}" * 40
    return bytes(data)


def _sample_payloads(n: int, seed: int) -> list[bytes]:
    return [orjson.dumps(r) for r in generate(Workload(events=n, seed=seed))]


SAMPLES = _sample_payloads(400, 3)
REAL = SAMPLES + [
    line.encode()
    for path in sorted((DATA / "shippers").glob("*.jsonl"))
    for line in path.read_text().splitlines()[:40]
    if line.strip()
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads(), max_size=20))
@example([native.SELF_CHECK[0]])
def test_generated_payloads_decode_alike(values: list[bytes]) -> None:
    same(values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(st.sampled_from(REAL)) | mutated(payloads()), max_size=20))
def test_mutated_real_and_generated_payloads_decode_alike(values: list[bytes]) -> None:
    same(values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=60) | st.none() | st.text(max_size=20) | st.sampled_from(REAL), max_size=40)
)
def test_any_value_decodes_alike(values: list[Any]) -> None:
    """Bytes of anything, None (a tombstone), str (a decoder that hands text), in batches past the size
    at which the scan runs without the GIL."""
    same(values)


TRICKY = [
    b"\\ud800",  # lone high surrogate
    b"\\udc00",  # lone low surrogate
    b"\\udc00\\ud800",  # a pair the wrong way round
    b"\\ud800\\u0041",  # high surrogate, then not a low one
    b"\\ud800x",
    b"\\uD83D\\uDE00",  # a pair, upper-case hex
    b"\\ud83d\\ude00",
    b"\\u0000",
    b"\\u00e9",
    b"\\u12",  # cut short
    b"\\u12g4",
    b"\\x41",
    b"\\'",
    b"\\/",
    b"\\\\",
    b'\\"',
    b"\xff",
    b"\xc3",  # a cut sequence
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a surrogate in UTF-8 (CESU)
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xe2\x82\xac",  # a valid euro sign
    b"\x7f",
    b"\x1f",  # a raw control character
    b"\t",
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SAMPLES), st.integers(0, 10**6), st.lists(st.sampled_from(TRICKY), min_size=1, max_size=3)
)
def test_tricky_strings_inside_a_valid_record_decode_alike(
    base: bytes, where: int, tokens: list[bytes]
) -> None:
    """An escape or byte sequence the decoder must judge (or pass on) spliced into one of the record's
    strings, or into a key: surrogates alone or paired, broken escapes, invalid or overlong UTF-8."""
    quotes = [i for i, c in enumerate(base) if c == ord('"')]
    at = quotes[where % len(quotes)] + 1  # just inside a string (a key's or a value's)
    same([base[:at] + b"".join(tokens) + base[at:]])


def test_each_tricky_string_in_each_column() -> None:
    base = SAMPLES[0]
    values = []
    for name in COLUMNS:
        key = f'"{name}":"'.encode()
        if key in base:
            values.extend(base.replace(key, key + token) for token in TRICKY)
    decoder = same(values)
    assert decoder.claimed and decoder.passed


def test_the_common_shape_takes_the_native_path() -> None:
    """Every generated record (the bench's shape) is claimed by the native decoder: none falls back."""
    values = _sample_payloads(5_000, 11)
    decoder = same(values)
    assert (decoder.claimed, decoder.passed) == (len(values), 0)


def test_what_it_cannot_judge_goes_to_the_python_path() -> None:
    """The self-check's odd records are passed on (each would need Python's rules), and still decode alike."""
    decoder = same(list(native.SELF_CHECK))
    assert decoder.claimed == 4  # the plain record, extra fields with escapes, escaped key, non-ASCII
    assert decoder.passed == len(native.SELF_CHECK) - 4


def test_huge_values_and_deep_nesting() -> None:
    base = native.SELF_CHECK[0][:-1]
    values = [
        base + b',"big":"' + b"x" * 5_000_000 + b'"}',
        base.replace(b'"csUserAgent":"Mozilla/5.0"', b'"csUserAgent":"' + "é".encode() * 300_000 + b'"')
        + b"}",
        base + b',"deep":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        base + b',"deep":' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}",
        base.replace(b"10.0.0.1", "é".encode() * 256) + b"}",  # 256 characters, 512 bytes: a key still
        base.replace(b"10.0.0.1", "é".encode() * 257) + b"}",
    ]
    decoder = same(values)
    assert decoder.claimed == 3


def test_self_check_passes_and_auto_picks_native() -> None:
    assert native.native_problem() is None
    assert native.choose("auto").name == "native"
    assert native.choose("python").name == "python"


# ------------------------------------------------------------------ through the detector

T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z
NOW = T0 + 3_600_000
TOPIC = "in"


def _detector(store: MemoryStore, engine: str, bound: int) -> tuple[Detector, RecordingProducer, list[Any]]:
    producer = RecordingProducer()
    acks: list[Any] = []
    detector = Detector(
        StreamParams(rule=RuleParams(threshold=6), max_skew_ms=10**12, grace_ms=60_000),
        store,
        Publisher(producer, "alerts", "dlq"),  # type: ignore[arg-type]
        acks.append,
        checkpoint_ms=60_000,
        clock=lambda: NOW,
        trust_headers=False,
        max_open_windows=bound,
        decode=native.decoder_for(engine),
        encode=native.encoder_for(engine),
        partition=native.NativePartitionEngine if engine == "native" else PartitionEngine,
    )
    return detector, producer, acks


def _event(rnd: random.Random) -> bytes:
    t = T0 + 1000 * rnd.randrange(3000)
    record = {
        "TimeGenerated": f"2026-01-01T{12 + (t - T0) // 3_600_000}:{(t - T0) // 60_000 % 60:02d}:"
        f"{(t - T0) // 1000 % 60:02d}.{rnd.randrange(1000):03d}Z",
        "cIP": f"198.51.100.{rnd.randrange(15)}",
        "Computer": rnd.choice(["WEB01", "wéb2"]),
        "sIP": "10.0.0.11",
        "sPort": rnd.randint(1, 12),
        "csMethod": rnd.choice(["GET", "POST"]),
        "csUriQuery": rnd.choice(["-", "a=%41+b", "q=%u00e9", "x=%ZZ"]),
        "csUserName": "-",
        "sSiteName": "W3SVC1",
        "csUserAgent": rnd.choice(["Mozilla/5.0", "curl/8.0", "x" * 2000]),
        "scStatus": rnd.choice(["200", "401", "403"]),
        "scSubStatus": rnd.choice(["0", "1", "4"]),
        "scWin32Status": rnd.choice(["0", "5", "2148074254", "-1", "x"]),
    }
    data = orjson.dumps(record)
    roll = rnd.random()
    if roll < 0.05:  # a bad record: the dead letter must be the same too
        return data[: rnd.randrange(len(data))]
    if roll < 0.08:
        return data.replace(b'"WEB01"', b'"WEB\\ud800"')
    if roll < 0.1:
        return data.replace(b'"sPort":', b'"sPort":"').replace(b',"csMethod"', b'","csMethod"')
    if roll < 0.12:
        return orjson.dumps({"records": [record, {"TimeGenerated": "x"}]})
    return data


def _run(engine: str, seed: int) -> tuple[list[Any], list[tuple[int, list[tuple[bytes, bytes]]]]]:
    """A worker over a seeded input with crashes (what was not acknowledged is read again by a new
    worker on the same store) and a bound on open windows (spill, close_spilled, restore(limit)).
    Returns everything sent (alerts, dead letters: bytes) and the store's records."""
    rnd = random.Random(seed)
    msgs = [Msg(TOPIC, p, n, b"k", _event(rnd)) for p in (0, 1) for n in range(400)]
    store = MemoryStore()
    sent: list[Any] = []

    async def go() -> None:
        crashes = 3
        detector, producer, acks = _detector(store, engine, rnd.randint(0, 4))
        pos = {0: 0, 1: 0}
        by_part = {p: [m for m in msgs if m.partition == p] for p in (0, 1)}
        while any(pos[p] < len(by_part[p]) for p in (0, 1)):
            fetch = {}
            for p in (0, 1):
                n = rnd.randint(0, 60)
                if n and pos[p] < len(by_part[p]):
                    fetch[TP(TOPIC, p)] = by_part[p][pos[p] : pos[p] + n]
                    pos[p] += len(fetch[TP(TOPIC, p)])
            if fetch:
                await detector.process(fetch)
            if rnd.random() < 0.3:
                detector.last_checkpoint = 0.0
                for p in list(detector.checkpointed):
                    detector.checkpointed[p] = 0.0
            if crashes and rnd.random() < 0.08:
                crashes -= 1
                sent.extend(producer.sent[: producer.delivered])
                for p in (0, 1):
                    done = [a[TP(TOPIC, p)] for a in acks if TP(TOPIC, p) in a]
                    pos[p] = done[-1] + 1 if done else 0
                detector, producer, acks = _detector(store, engine, rnd.randint(0, 4))
        await detector.close()
        sent.extend(producer.sent)

    asyncio.run(go())
    state = [(p, sorted(store._part(p).items())) for p in (0, 1)]
    return sent, state


@pytest.mark.parametrize("seed", range(6))
def test_worker_with_either_engine_sends_and_stores_the_same_bytes(seed: int) -> None:
    """Alerts, dead letters and every state record byte for byte, over crashes, restores and spills."""
    python = _run("python", seed)
    assert python == _run("native", seed)
    sent, _ = python
    assert any(topic == "alerts" for topic, _, _ in sent) and any(topic == "dlq" for topic, _, _ in sent)


def test_engines_share_one_store() -> None:
    """A Python worker, then a native one on its store, then Python again: the same as Python throughout."""
    rnd = random.Random(5)
    msgs = [Msg(TOPIC, 0, n, b"k", _event(rnd)) for n in range(600)]
    tp = TP(TOPIC, 0)

    def run(engines: list[str]) -> tuple[list[Any], list[tuple[bytes, bytes]]]:
        store = MemoryStore()
        sent: list[Any] = []

        async def go() -> None:
            for i, engine in enumerate(engines):
                detector, producer, _ = _detector(store, engine, 3)
                for start in range(i * 200, (i + 1) * 200, 50):
                    await detector.process({tp: msgs[start : start + 50]})
                await detector.close()
                sent.extend(producer.sent)

        asyncio.run(go())
        return sent, sorted(store._part(0).items())

    assert run(["python", "native", "python"]) == run(["python"] * 3)


# ------------------------------------------------------------------ record encoding

STATE_TEXT = st.sampled_from(
    ["", "-", "a", "b", "é", "😀", '"', "\\", "\x00", "\x1f\x7f", "\u2028"]
) | st.text(SAFE_CHAR, max_size=6)
FOLD = st.tuples(
    st.integers(0, 2**40),  # time
    st.none() | st.integers(0, 65535) | st.integers(0, 40),  # port
    st.tuples(*[STATE_TEXT] * 9) | st.sampled_from([tuple("abcdefghi")]),
    st.integers(0, 3),  # source partition
    st.integers(0, 2**64 - 1) | st.integers(0, 50),  # sequence
)


def _record(folds: list[tuple[Any, ...]], cap: int, sent: int, closed: bool) -> WindowRecord:
    rec = WindowRecord()
    for t, port, values, src, seq in folds:
        if rec.first_time(position(src, seq)):
            rec.add(t, port, values, cap)
    rec.alerts_sent, rec.closed = sent, closed
    return rec


RULES = [None, RuleParams(), RuleParams(max_set_size=2, threshold=2), RuleParams(max_set_size=0)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(FOLD, max_size=40), min_size=1, max_size=5),
    st.sampled_from(range(len(RULES))),
    st.integers(0, 5),
    st.booleans(),
)
def test_record_bytes_are_the_same_with_either_engine(
    windows: list[list[tuple[Any, ...]]], rule_index: int, sent: int, closed: bool
) -> None:
    """A checkpoint's records (every stored shape: one request, small and large sets, ports one, a few,
    many; one source or several) encode to the same bytes; the records are built twice, as `to_bytes`
    trims in place."""
    rule = RULES[rule_index]
    cap = rule.max_set_size if rule else 128

    def records() -> dict[bytes, WindowRecord]:
        return {b"%d" % i: _record(w, cap, sent, closed) for i, w in enumerate(windows)}

    assert native.native_encode(records(), rule) == native.python_encode(records(), rule)


def test_records_python_must_encode_are_encoded_alike() -> None:
    """A port bitmap (past 1,024 ports), a set past a small cap (trimmed), a record past the record bound
    (shrunk), and the self-check's shapes."""
    rule = RuleParams(max_set_size=4, threshold=2, max_record_bytes=65_536)
    big = {
        b"big": _record(
            [(i, i, tuple(f"{c}{i}" + "é" * 900 for c in "abcdefghi"), 0, i) for i in range(200)], 4, 0, False
        )
    }
    for make in (native.self_check_records, lambda: dict(big)):
        for r in (None, rule, RuleParams()):
            assert native.native_encode(make(), r) == native.python_encode(make(), r)


def test_a_lone_surrogate_in_a_record_fails_alike() -> None:
    """No decoder makes one (they are invalid UTF-8), but if one were there both engines refuse alike."""
    rec = {b"k": WindowRecord.first(0, 1, ("\ud800",) * 9, 1, False)}
    errors = []
    for encode in (native.native_encode, native.python_encode):
        try:
            encode(dict(rec), None)
        except Exception as exc:
            errors.append(type(exc))
    assert len(errors) == 2 and errors[0] == errors[1]


# ------------------------------------------------------------------ replay


def test_replay_gives_the_same_output_with_either_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay --engine native` against `--engine python` over generated records, every shipper fixture
    and mutated lines: the same alerts byte for byte and the same report of bad input."""
    from streams.cli import main

    rnd = random.Random(9)
    lines = _sample_payloads(3_000, 4) + REAL
    for _ in range(300):
        line = bytearray(rnd.choice(lines))
        at = rnd.randrange(len(line))
        line[at:at] = rnd.choice([b"\xff", b"\\ud800", b'"', b"1", b"\\u00e9"])
        lines.append(bytes(line))
    rnd.shuffle(lines)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    results = []
    for engine in ("python", "native"):
        out = tmp_path / f"{engine}.jsonl"
        code = main(["replay", str(source), "--threshold", "10", "--engine", engine, "--output", str(out)])
        results.append((code, out.read_bytes(), capsys.readouterr().err))
    assert results[0] == results[1]
    assert results[0][1].count(b"\n") >= 5 and "bad records (" in results[0][2]


# ------------------------------------------------------------------ the engine's fold (NativePartitionEngine)

BIN = 600_000
BASE = 1_767_268_800_000  # a bin start
FOLD_RULE = RuleParams(threshold=2, max_set_size=3)
FOLD_TEXT = st.sampled_from(["", "-", "a", "b", "c", 'q"\\\n', "é", "😀", "\u2028", "x" * 300]) | st.text(
    st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=6
)


@st.composite
def fold_events(draw: st.DrawFn) -> tuple[int, int, IISEvent]:
    """(source, sequence step, event): few groups (windows repeat), times over a few bins, some far
    ahead or behind, ports past the bitmap bound, values with escapes, non-ASCII and long strings."""
    bins = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1]) | st.integers(-30, 4))
    t = BASE + bins * BIN + draw(st.integers(0, BIN - 1) | st.sampled_from([0, BIN - 1]))
    if draw(st.integers(0, 30)) == 0:
        t += 10**9  # far in the future
    port = draw(st.none() | st.integers(0, 5) | st.integers(0, 2000) | st.just(70_000))
    values = [draw(st.sampled_from(["GET", "a"]) | FOLD_TEXT) for _ in range(8)]
    ev = IISEvent(
        t,
        draw(st.sampled_from(["10.0.0.1", "10.0.0.1", "10.0.0.2", "é"]) | FOLD_TEXT),
        draw(st.sampled_from(["web1", "web\\2"])),
        "10.1.1.1",
        port,
        *values,
        tenant=draw(st.sampled_from(["", "", "", "t1", 'te"n'])),
    )
    return draw(st.integers(0, 2)), draw(st.sampled_from([1, 1, 1, 0, -1, -5])), ev


STEP = st.tuples(st.just("step"), st.lists(fold_events(), max_size=25), st.integers(0, BIN // 2))
FOLD_OPS = st.lists(
    st.one_of(
        STEP,
        STEP,
        st.tuples(st.just("tick"), st.sampled_from([0, 1000]) | st.integers(0, 3 * BIN)),
        st.tuples(st.just("spill"), st.integers(0, 6)),
        st.tuples(st.just("crash"), st.sampled_from([None, 0, 2, 100])),
    ),
    max_size=16,
)


def engine_state(engine: Any) -> Any:
    """Everything an engine holds that the next step depends on, comparable."""
    return (
        [(key, rec.to_bytes()) for key, rec in engine.open.items()],
        engine._by_end,
        engine._spilled,
        engine._stale,
        engine.meta,
        engine.last_input_wall_ms,
        engine._expired_to,
    )


def result_view(out: Any, rule: RuleParams) -> Any:
    return (
        out.alerts,
        list(encode_writes(out.writes, rule).items()),
        [(i, e.reason, e.detail) for i, e in out.rejected],
        out.closing,
        out.expire_before_ms,
        out.already_applied,
    )


class Side:
    """One engine with its store, driven as the detector drives it (plan, load, step, close_spilled,
    write)."""

    def __init__(self, make: Any, params: StreamParams) -> None:
        self.make, self.params = make, params
        self.store: dict[bytes, bytes] = {}
        self.engine = make(params, None, 0)

    def write(self, out: Any) -> None:
        self.store.update(encode_writes(out.writes, self.params.rule))
        if out.expire_before_ms is not None:
            for key in [k for k in self.store if k != META_KEY and key_start_ms(k) < out.expire_before_ms]:
                del self.store[key]

    def finish(self, out: Any) -> Any:
        for start, closed in out.closing.items():
            records = [
                (k, v)
                for k, v in sorted(self.store.items())
                if k != META_KEY and key_start_ms(k) == start and k not in closed
            ]
            self.engine.close_spilled(out, records)
        view = result_view(out, self.params.rule)
        self.write(out)
        return view

    def op(self, op: tuple[Any, ...], positions: dict[int, int], now: int) -> Any:
        kind = op[0]
        if kind == "step":
            batch = []
            for source, delta, ev in op[1]:
                positions[source] = max(0, positions.get(source, 0) + delta)
                batch.append((position(source, positions[source]), ev))
            plan = self.engine.plan(batch)
            loaded = {key: self.store.get(key) for key in plan.load}
            return (plan.keys, plan.load), self.finish(self.engine.step(plan, loaded, now))
        if kind == "tick":
            return self.finish(self.engine.tick(now))
        if kind == "spill":
            return self.finish(self.engine.spill(op[1]))
        # a crash: a new engine restored from what was written
        self.engine = self.make(self.params, Meta.from_bytes(self.store.get(META_KEY)), now)
        self.engine.restore(sorted(self.store.items()), op[1])
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FOLD_OPS, st.booleans(), st.booleans())
def test_native_fold_steps_like_the_python_engine(ops: list[Any], tenants: bool, early: bool) -> None:
    params = StreamParams(
        rule=FOLD_RULE,
        grace_ms=60_000,
        retention_ms=3 * BIN,
        max_skew_ms=BIN,
        early=early,
        tenant_thresholds=TenantThresholds(3, {"t1": 2, 'te"n': 1}) if tenants else None,
    )
    python, fold = Side(PartitionEngine, params), Side(native.NativePartitionEngine, params)
    positions_p: dict[int, int] = {}
    positions_n: dict[int, int] = {}
    now = BASE
    for op in ops:
        now += op[2] if op[0] == "step" else op[1] if op[0] == "tick" else 0
        try:
            expected = python.op(op, positions_p, now)
        except Exception as exc:
            with pytest.raises(type(exc)):
                fold.op(op, positions_n, now)
            return
        assert fold.op(op, positions_n, now) == expected
        assert engine_state(fold.engine) == engine_state(python.engine)
        assert fold.store == python.store


def test_native_fold_passes_what_it_cannot_judge_to_python() -> None:
    """A lone surrogate in a key (orjson refuses it: the same error), an event of another class, a
    time past an i64: the reference's answer."""
    params = StreamParams(rule=FOLD_RULE)
    lone = IISEvent(BASE, "a\ud800", "web1", "s", 1)
    for make in (PartitionEngine, native.NativePartitionEngine):
        with pytest.raises(orjson.JSONEncodeError):
            make(params, None, BASE).plan([(0, lone)])
    big = IISEvent(2**70, "a", "web1", "s", 1)  # the reference fails to word its rejection: alike
    ok = IISEvent(BASE, "a", "web1", "s", 1)
    for batch in ([(0, big), (1, ok)], [(0, ok), (2**80, ok)], [(0, ok), (1, ok)]):
        views = []
        for make in (PartitionEngine, native.NativePartitionEngine):
            engine = make(params, None, BASE)
            try:
                out = engine.step(engine.plan(batch), {}, BASE)
            except Exception as exc:
                views.append(type(exc))
            else:
                views.append((result_view(out, params.rule), engine_state(engine)))
        assert views[0] == views[1]


@pytest.mark.parametrize("seed", range(6))
def test_native_fold_spills_and_restores_like_the_python_engine(seed: int) -> None:
    """Long seeded runs with a small bound (spill after each step, crashes with a restore limit): the
    spilled windows' branches (loaded back, closed by the watermark, by close_spilled) run often."""
    rnd = random.Random(seed)
    params = StreamParams(
        rule=FOLD_RULE,
        grace_ms=60_000,
        retention_ms=3 * BIN,
        max_skew_ms=BIN,
        tenant_thresholds=TenantThresholds(3, {"t1": 2}) if seed % 2 else None,
    )
    python, fold = Side(PartitionEngine, params), Side(native.NativePartitionEngine, params)
    positions_p: dict[int, int] = {}
    positions_n: dict[int, int] = {}
    now, t = BASE, BASE
    for _ in range(150):
        events = []
        for _ in range(rnd.randrange(30)):
            t = max(BASE, t + rnd.randrange(-90_000, 100_000))
            ev = IISEvent(
                t + rnd.choice([0, 0, 0, -4 * BIN, 2 * BIN]),
                f"10.0.0.{rnd.randrange(12)}",
                rnd.choice(["web1", "wéb2"]),
                "10.1.1.1",
                rnd.choice([None, 80, 443, rnd.randrange(2000)]),
                *(rnd.choice(["-", "a", "b", "c", "d", "e"]) for _ in range(8)),
                tenant=rnd.choice(["", "t1"]),
            )
            events.append((rnd.randrange(3), rnd.choice([1, 1, 1, 1, 0, -3]), ev))
        now = max(now, t) + rnd.randrange(60_000)
        for op in [("step", events, 0), ("spill", rnd.randrange(8))] + (
            [("crash", rnd.choice([0, 3, None]))] if rnd.randrange(10) == 0 else []
        ):
            expected = python.op(op, positions_p, now)
            assert fold.op(op, positions_n, now) == expected
            assert engine_state(fold.engine) == engine_state(python.engine)
        assert fold.store == python.store


def test_native_fold_keys_are_orjson_bytes() -> None:
    """Keys before 1970 (a signed 13-digit prefix), past 13 digits, with a tenant, with escapes and
    non-ASCII: the same bytes and load list as the reference's plan."""
    batch = [
        (0, IISEvent(-5, "a", "b", "c", 1)),
        (1, IISEvent(-600_001, "a", "b", "c", 1, tenant="t")),
        (2, IISEvent(10**14, 'é😀"\\\x01\u2028', "b", "c", None)),
    ]
    params = StreamParams()
    want = PartitionEngine(params).plan(batch)
    got = native.NativePartitionEngine(params).plan(batch)
    assert (got.keys, got.load, got.watermark) == (want.keys, want.load, want.watermark)
