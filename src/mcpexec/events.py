"""In-process wake-ups: work available, a run changed, cancellation requested.

Nothing depends on these for correctness: every waiter also wakes on a timeout and re-reads the
store, so a run changed by another process (a separate ``mcpexec worker``) is seen after at most one
poll interval. In one process they make submit→start and finish→answer immediate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcpexec.aio import Waiters, wait_event


class EventHub:
    def __init__(self) -> None:
        self._work = asyncio.Event()
        self._run_waiters = Waiters()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._change_listeners: list[Callable[[str], None]] = []

    # -- work ---------------------------------------------------------------------------------
    def work_available(self) -> None:
        self._work.set()

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
        self._run_waiters.notify(run_id)

    def all_runs_changed(self) -> None:
        """Wake every run waiter (shutdown: each re-reads its run and learns the news)."""
        for run_id in self._run_waiters.waiting():
            self.run_changed(run_id)

    async def wait_run(self, run_id: str, timeout: float) -> bool:
        """Wait for the next change of ``run_id``; ``False`` on timeout."""
        return await self._run_waiters.wait(run_id, timeout)

    # -- cancellation -------------------------------------------------------------------------
    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        self._cancel_listeners.append(listener)

    def remove_cancel_listener(self, listener: Callable[[str], None]) -> None:
        self._cancel_listeners.remove(listener)

    def cancel_requested(self, run_id: str) -> None:
        for listener in list(self._cancel_listeners):
            listener(run_id)
