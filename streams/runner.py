"""`iis-portscan worker`: create missing topics, build the app, run the faust worker until stopped."""

from __future__ import annotations

import logging
import os

import faust

from streams.app import create_app
from streams.settings import Settings
from streams.topics import ensure_topics


def run_worker(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    os.makedirs(settings.data_dir, exist_ok=True)
    source_partitions = ensure_topics(settings)
    job = create_app(settings, source_partitions)
    worker = faust.Worker(job.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; faust commits and flushes on the way out
    return 0
