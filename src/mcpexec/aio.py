"""Bounded waits that never swallow a cancellation.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result when the task is cancelled in
the same moment the awaited event fires (cpython gh-86296, fixed in 3.12): the cancellation is
lost, and a background loop that was being stopped goes on forever (``App.close`` then waited
its whole timeout). ``asyncio.timeout`` tells its own expiry from an outside cancellation, so
every "wait for this event, at most so long" goes through here.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set, at most ``timeout`` seconds; ``True`` when it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def wait_done(future: asyncio.Future[Any], timeout: float) -> bool:
    """Wait until ``future`` is done (without cancelling it), at most ``timeout`` seconds;
    ``True`` when it was."""
    if future.done():
        return True
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await asyncio.shield(future)
    except TimeoutError:
        return False
    return True


class Waiters:
    """Callers waiting for the next change of a key (a run's id): ``wait`` returns at the next
    ``notify`` of its key, or after its timeout."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def waiting(self) -> list[str]:
        return list(self._waiting)

    def notify(self, key: str) -> None:
        for waiter in self._waiting.pop(key, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, key: str, timeout: float) -> bool:
        """``True`` when ``key`` was notified, ``False`` on timeout."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(waiter)
        try:
            return await wait_done(waiter, timeout)
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiting[key]
