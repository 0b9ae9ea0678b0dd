"""Bounded waits keep a cancellation that arrives as the event fires (cpython gh-86296)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mcpexec.aio import wait_done, wait_event

pytestmark = pytest.mark.anyio


async def _loop_until_cancelled(wait: Callable[[asyncio.Event], Awaitable[object]]) -> bool:
    """A background loop like the engine's: is it stopped by a cancel sent as it is woken?"""
    event = asyncio.Event()
    waiting = asyncio.Event()

    async def loop() -> None:
        while True:
            waiting.set()
            await wait(event)
            event.clear()

    task = asyncio.ensure_future(loop())
    await asyncio.wait_for(waiting.wait(), 5)
    await asyncio.sleep(0)  # the loop is inside its wait
    event.set()
    task.cancel()  # in the same moment
    await asyncio.wait([task], timeout=5)
    stopped = task.cancelled()
    if not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=5)
    return stopped


async def test_wait_event_never_swallows_a_cancellation() -> None:
    assert await _loop_until_cancelled(lambda e: wait_event(e, 10))


async def test_wait_event_and_wait_done_answer_whether_it_happened() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.0) is False
    event.set()
    assert await wait_event(event, 0.0) is True
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert await wait_done(future, 0.0) is False
    assert not future.cancelled()  # a timeout leaves the future alone
    future.set_result(None)
    assert await wait_done(future, 1.0) is True
