"""In-process wake-ups: work available, a run changed, cancellation requested.

Nothing depends on these for correctness: every waiter also wakes on a timeout and re-reads the
store, so a run changed by another process (a separate ``mcpexec worker``) is seen after at most one
poll interval. In one process they make submit→start and finish→answer immediate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcpexec.aio import Waiters, wait_event

#: The one key of the event log's waiters.
_LOG = "log"


class EventHub:
    def __init__(self) -> None:
        self._work = asyncio.Event()
        self._run_waiters = Waiters()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._change_listeners: list[Callable[[str], None]] = []
        self._log_waiters = Waiters()

    # -- work ---------------------------------------------------------------------------------
    def work_available(self) -> None:
        self._work.set()
        self.log_changed()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work was announced since the last call, or after ``timeout``."""
        await wait_event(self._work, timeout)
        self._work.clear()

    # -- runs ---------------------------------------------------------------------------------
    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(run_id)`` on every ``run_changed`` (the workflow engine's wake-up)."""
        self._change_listeners.append(listener)

    def run_changed(self, run_id: str) -> None:
        """Status, progress, logs or artifacts of ``run_id`` changed."""
        for listener in self._change_listeners:
            listener(run_id)
        self.log_changed()
        self._run_waiters.notify(run_id)

    def all_runs_changed(self) -> None:
        """Wake every run waiter (shutdown: each re-reads its run and learns the news)."""
        for run_id in self._run_waiters.waiting():
            self.run_changed(run_id)

    async def wait_run(self, run_id: str, timeout: float) -> bool:
        """Wait for the next change of ``run_id``; ``False`` on timeout."""
        return await self._run_waiters.wait(run_id, timeout)

    # -- the event log ------------------------------------------------------------------------
    def log_changed(self) -> None:
        """The event log may have grown (a change in this process): wake every event reader."""
        self._log_waiters.notify(_LOG)

    async def wait_log(self, timeout: float) -> bool:
        """Wait for the next ``log_changed``; ``False`` on timeout (readers then re-read the
        store anyway: other processes' changes wake nobody here)."""
        return await self._log_waiters.wait(_LOG, timeout)

    # -- cancellation -------------------------------------------------------------------------
    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        self._cancel_listeners.append(listener)

    def remove_cancel_listener(self, listener: Callable[[str], None]) -> None:
        self._cancel_listeners.remove(listener)

    def cancel_requested(self, run_id: str) -> None:
        for listener in list(self._cancel_listeners):
            listener(run_id)
