"""``mcpexec spool run DIR``: a spool daemon in its own process, on the same store as ``serve``
($MCPEXEC_HOME), with its own workers unless ``--no-workers`` (then a ``serve`` or ``worker``
on that home executes the runs)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

# The one place the spool reaches for the bootstrap.
from mcpexec.bootstrap import build_app
from mcpexec.settings import Settings
from mcpexec.spool.daemon import Spool
from mcpexec.spool.eventlog import LogFormat

__all__ = ["build_app", "run_standalone"]

log = logging.getLogger(__name__)


def run_standalone(
    root: Path,
    settings: Settings,
    *,
    workers: int,
    log_format: LogFormat,
    log_level: str,
    drain: bool = False,
) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # watchfiles logs every batch of changes at info; daemon.log says what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    asyncio.run(_main(root, settings, workers, log_format, drain))


async def _main(
    root: Path, settings: Settings, workers: int, log_format: LogFormat, drain: bool
) -> None:
    app = build_app(settings, pidfd_watcher=True)
    await app.open()
    try:
        await app.start_background(workers=workers, reaper=workers > 0)
        spool = Spool(app, root, log_format=log_format)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, spool.stop)
        log.info(
            "mcpexec spool on %s: %d worker slot(s), %d job(s) in flight at most, isolation=%s",
            spool.dirs.root,
            workers,
            spool.parallel,
            app.isolation,
        )
        await spool.run(drain=drain)
    finally:
        await app.close()
