"""`iis-portscan worker`: check the services, create missing topics, build the app, run the faust
worker until stopped."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time

import faust

from streams import logs
from streams.core.escape import printable
from streams.errors import AuthError, JobError, ServiceUnreachable
from streams.kafka.app import create_app
from streams.kafka.diagnosis import reach_kafka
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

log = logging.getLogger("iis-portscan")


def run_worker(settings: Settings) -> int:
    # State files hold every client's user names, queries and agents: readable by this user only
    # (the systemd unit sets UMask=0077 too; the CLI and the image must not depend on it).
    os.umask(0o077)
    logs.setup(settings.log_level, settings.log_format)
    try:
        reach_kafka(settings)
        if settings.store_kind().is_redis:
            asyncio.run(reach_redis(settings))
        private_dir(settings.data_dir)
        source_partitions = ensure_topics(settings)
        job = create_app(settings, source_partitions)  # reads the allowlist (file, topic) first
    except JobError as exc:
        sys.stderr.write(f"iis-portscan: {printable(str(exc))}\n")
        return 2
    worker = faust.Worker(
        job.app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logs.logging_config(settings.log_level, settings.log_format),
    )
    tune_gc()
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; faust commits and flushes on the way out
    return 0


def private_dir(path: str) -> None:
    """The data dir, created 0700; an existing one made 0700 when it is ours (a mounted volume's root may
    belong to root with the pod's group: then it is left as the platform made it, and a warning says so)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except PermissionError:
            log.warning("data dir %s is readable by other users and not ours to change", path)


async def reach_redis(settings: Settings) -> None:
    """Wait up to --connect-timeout for Redis to answer; credentials it refuses fail at once."""
    from streams.state.redis import RedisStore

    store = RedisStore(settings.store, settings.app_id, **settings.redis_store_options())
    deadline = time.monotonic() + settings.connect_timeout / 1000
    try:
        while True:
            try:
                await store.ping()
                return
            except AuthError:
                raise
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise ServiceUnreachable(
                        f"cannot reach Redis at {store.address} within "
                        f"{settings.connect_timeout / 1000:g}s: {exc}"
                    ) from None
                await asyncio.sleep(0.5)
    finally:
        await store.close()


def tune_gc() -> None:
    """Collect cycles less often: the worker allocates a few objects per event (records, events,
    window records) and almost none of them form cycles, yet with CPython's default thresholds (700
    allocations) the collector ran thousands of times a second and took a large share of the core's
    time. What was built at startup (modules, faust) is frozen out of the collector's scans."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
