"""The pure core alone, per event: where a worker's CPU goes before any Kafka or store cost.

    python -m benchmarks.core [--events N] [--batch B] [--against REV] [--tenants N]

Times, over the same generated records in one run: `orjson.loads` of each payload (the baseline: the
least any JSON consumer pays per message), our hot-path decoding with each engine (`--engine python`:
`parse.single_event` per record; `--engine native`: the extension's batch decoder, batches of B, when it
is built), the engine (`plan` + `step` per batch of B events, one partition) over the events each decoder
gave, and the checkpoint's serialization of what the steps changed (once per 10 batches as a 1 s
checkpoint would, with the rule, by each engine's record encoder). The engines' outputs are compared: a
difference fails the run. `--against REV` times the engine module of a git revision too, on the same
events, and checks that both give the same alerts and writes. `--tenants N` times the same records as N
tenants' (`--tenant-field field:TenantId`): the fast path with the tenant field, and the engine over
tenants' events, beside the rows above. No I/O: numbers are per-event CPU costs, best of 3 (the engines:
of 5, ours before and after).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from streams.core import engine as current_engine
from streams.core import native
from streams.core.escape import dumps as escape_dumps
from streams.core.parse import single_event
from streams.core.records import IISEvent
from streams.core.rule import RuleParams
from streams.core.state_records import encode_writes
from streams.core.tenant import TenantSpec, single_event_with_tenant
from streams.core.windows import META_KEY
from streams.io.sample import Workload, generate

ROOT = Path(__file__).resolve().parent.parent


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of `runs` calls (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def engine_at(rev: str) -> ModuleType:
    """`streams/core/engine.py` as it was at a git revision, imported as its own module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:streams/core/engine.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="engine-")) / "engine_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("engine_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_engine(
    module: ModuleType, events: list[IISEvent], batch: int, now_ms: int, make: Any = None
) -> tuple[list, list]:
    """Every batch through a fresh engine of `module` (or made by `make`): (alerts, writes per batch)."""
    params = module.StreamParams()
    engine = (make or module.PartitionEngine)(params, None, now_ms)
    alerts: list[dict[str, Any]] = []
    writes: list[dict[bytes, Any]] = []
    planned = hasattr(engine, "plan")
    for i in range(0, len(events), batch):
        items = [(i + j, ev) for j, ev in enumerate(events[i : i + batch])]
        if planned:
            plan = engine.plan(items)
            out = engine.step(plan, {}, now_ms)
        else:  # the API before plan/step: keys_to_load(batch), step(batch, loaded, now)
            engine.keys_to_load(items)
            out = engine.step(items, {}, now_ms)
        alerts.extend(out.alerts)
        writes.append(out.writes)
    return alerts, writes


def encode_all(writes: list[dict[bytes, Any]]) -> list[dict[bytes, bytes]]:
    """The stored bytes of each step's writes."""
    return [encode_writes(w) for w in writes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events per step (a fetch's share)")
    parser.add_argument("--against", metavar="REV", help="also time the engine of this git revision")
    parser.add_argument("--tenants", type=int, default=0, metavar="N", help="also time N tenants' records")
    args = parser.parse_args(argv)

    records = list(generate(Workload(events=args.events, seed=7)))
    payloads = [orjson.dumps(r) for r in records]
    n = len(payloads)
    base_s, _ = best_of(3, lambda: [orjson.loads(p) for p in payloads])
    parse_s, parsed = best_of(3, lambda: [single_event(p) for p in payloads])
    events = [e for e in parsed if e is not None]
    if len(events) != n:
        raise SystemExit(f"{n - len(events)} generated records did not take the fast path")
    now_ms = max(e.time_ms for e in events)
    engine_s, (alerts, writes) = best_of(5, lambda: run_engine(current_engine, events, args.batch, now_ms))
    problem = native.native_problem()
    native_rows: list[tuple[str, float]] = []
    same_native = True
    if problem is None:
        decode = native.decoder_for("native")
        step = args.batch

        def native_parse() -> list[Any]:
            out: list[Any] = []
            for i in range(0, n, step):
                out.extend(decode(payloads[i : i + step]))
            return out

        native_s, native_events = best_of(3, native_parse)
        # The Python engine and the native fold over the same events, interleaved (each run's objects
        # outlive it until the next: a later row would pay more garbage collection than an earlier one)
        native_engine_s = fold_s = float("inf")
        same_fold = True
        for _ in range(5):
            run_s, (n_alerts, n_writes) = best_of(
                1, lambda: run_engine(current_engine, native_events, args.batch, now_ms)
            )
            native_engine_s = min(native_engine_s, run_s)
            del n_writes
            run_s, (f_alerts, f_writes) = best_of(
                1,
                lambda: run_engine(
                    current_engine, native_events, args.batch, now_ms, native.NativePartitionEngine
                ),
            )
            fold_s = min(fold_s, run_s)
            same_fold = same_fold and f_alerts == alerts and encode_all(f_writes) == encode_all(writes)
            del f_writes
        n_alerts, n_writes = run_engine(current_engine, native_events, args.batch, now_ms)
        same_native = (
            native_events == events and n_alerts == alerts and encode_all(n_writes) == encode_all(writes)
        )
        label = "same" if same_native else "DIFFERENT"
        native_rows = [
            (f"decode: native, batches of {step} ({label} events)", native_s),
            (f"engine plan + step, native-decoded events ({label} output)", native_engine_s),
            (f"engine plan + step, native fold ({'same' if same_fold else 'DIFFERENT'} output)", fold_s),
        ]
        same_native = same_native and same_fold
    else:
        print(f"native engine not measured: {problem}", file=sys.stderr)

    rule = RuleParams()

    def encode_with(records: native.Encode) -> Callable[[], list[dict[bytes, bytes]]]:
        """A checkpoint's serialization as the detector's (PendingWrites.encode with the rule), every 10
        steps, with an engine's record encoder."""

        def run() -> list[dict[bytes, bytes]]:
            out, held = [], {}
            for i, batch_writes in enumerate(writes, 1):
                held.update(batch_writes)
                if i % 10 == 0 or i == len(writes):
                    meta = held.pop(META_KEY, None)
                    data = {} if meta is None else {META_KEY: meta.to_bytes()}
                    data.update(records(held, rule))
                    out.append(data)
                    held = {}
            return out

        return run

    encode_s, encoded_writes = best_of(3, encode_with(native.python_encode))
    encoded = sum(len(v) for d in encoded_writes for v in d.values())
    if problem is None:
        native_encode_s, native_writes = best_of(3, encode_with(native.native_encode))
        same_bytes = native_writes == encoded_writes
        same_native = same_native and same_bytes
        label = "same" if same_bytes else "DIFFERENT"
        native_rows.append((f"checkpoint encode, native ({label} bytes)", native_encode_s))
    # What the publisher serializes: the alerts, with orjson alone and with the escaping it publishes them
    # through (streams.core.escape.dumps); 20 rounds, so that the two are measured over enough bytes.
    dumps_s, _ = best_of(5, lambda: [orjson.dumps(a) for _ in range(20) for a in alerts])
    escaped_s, _ = best_of(5, lambda: [escape_dumps(a) for _ in range(20) for a in alerts])
    rows = [
        ("orjson.loads (baseline)", base_s),
        ("decode: python, parse.single_event", parse_s),
        *native_rows[:1],
        ("engine plan + step, python-decoded events", engine_s),
        *native_rows[1:3],
        ("checkpoint encode, python (WindowRecord.to_bytes)", encode_s),
        *native_rows[3:],
        ("alerts: orjson.dumps (x20)", dumps_s),
        ("alerts: escape.dumps, as published (x20)", escaped_s),
    ]
    if args.tenants:
        fast = single_event_with_tenant(TenantSpec("field", "TenantId"))
        assert fast is not None
        tenant_payloads = [
            orjson.dumps({**r, "TenantId": f"tenant-{i % args.tenants:04d}"}) for i, r in enumerate(records)
        ]
        tparse_s, tparsed = best_of(3, lambda: [fast(p) for p in tenant_payloads])
        tenant_events = [e for e in tparsed if e is not None]
        if len(tenant_events) != n:
            raise SystemExit(f"{n - len(tenant_events)} tenants' records did not take the fast path")
        tengine_s, (talerts, _) = best_of(
            5, lambda: run_engine(current_engine, tenant_events, args.batch, now_ms)
        )
        rows.append((f"parse, field:TenantId fast path ({args.tenants} tenants)", tparse_s))
        rows.append((f"engine plan + step ({args.tenants} tenants, {len(talerts)} alerts)", tengine_s))
    if args.against:
        old = engine_at(args.against)
        old_s, (old_alerts, old_writes) = best_of(5, lambda: run_engine(old, events, args.batch, now_ms))
        # again, after the other: the machine's drift between the two measurements shows
        again_s, _ = best_of(5, lambda: run_engine(current_engine, events, args.batch, now_ms))
        engine_s = min(engine_s, again_s)
        same = old_alerts == alerts and [list(w) for w in old_writes] == [list(w) for w in writes]
        rows.append((f"engine at {args.against} ({'same' if same else 'DIFFERENT'} output)", old_s))
        if not same:
            print("the engines disagree", file=sys.stderr)
    print(f"{n:,} events, {args.batch} per step, {len(alerts)} alerts, {encoded / 1e6:.1f} MB written")
    print(f"{'stage':<60} {'µs/event':>9} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:<60} {seconds / n * 1e6:>9.2f} {seconds / base_s:>11.2f}")
    if not same_native:
        print("the native and the python engine disagree", file=sys.stderr)
    return 0 if (not args.against or same) and same_native else 1


if __name__ == "__main__":
    sys.exit(main())
