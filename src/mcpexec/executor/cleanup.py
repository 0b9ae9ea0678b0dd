"""What is left of an attempt once its tree is dead — the workdir, the cgroup leaf, the
sandbox's mounts, limit groups and descriptors — is removed by one thread, not on the event loop.

Removing a workdir is ``rmdir`` of four directories at least: 0.8 ms on a quiet disk, 13-15 ms
here when other writers share the ext4 journal (mounted with ``discard``, every freed block is
trimmed at commit), and a cgroup leaf's ``rmdir`` may wait for the kernel for up to 0.5 s after
a kill. Profiled on the loop during the engine benchmark this was about a quarter of the loop's
samples (docs/benchmarks.md). The attempt's result does not depend on any of it, so the
supervisor hands the cleanup here and returns at once; :meth:`Cleanup.drain` waits for what is
queued (the executor's ``stop`` calls it). If the server dies with cleanups queued, the next
start removes stale workdirs and the watchdog or the next start the cgroups, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Cleanup:
    """One worker thread, started on first use; cleanups run in the order they were queued."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # One thread runs them in order: when the last one queued is done, all are.
        self._last: concurrent.futures.Future[None] | None = None

    def submit(self, fn: Callable[[], None]) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="mcpexec-cleanup"
            )
        self._last = self._pool.submit(self._run, fn)

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a cleanup never fails a run; what it left, start-up removes
            log.exception("attempt cleanup failed")

    async def drain(self) -> None:
        """Until every cleanup queued so far has run."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wrap_future(last)

    async def close(self) -> None:
        """Drain, then end the thread."""
        await self.drain()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
