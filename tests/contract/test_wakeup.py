"""``Store.wait_for_work``: bounded, woken by enqueues and retries, no lost wake-up."""

from __future__ import annotations

import asyncio

import pytest

from mcpexec.store.base import Store

from .contract_helpers import T0, claim_one, failed, new_run, t

pytestmark = pytest.mark.anyio

#: Bounds the waits below; no test waits this long unless the wake-up is broken.
BOUND_S = 10.0


async def test_the_flag_says_whether_other_processes_wake_it(store: Store) -> None:
    # A bool on the class, read by workers to choose how often to poll.
    assert isinstance(type(store).wakes_across_processes, bool)


async def test_nothing_to_do_times_out(store: Store) -> None:
    assert await store.wait_for_work(0.01) is False


async def test_an_enqueue_before_the_wait_is_not_lost(store: Store) -> None:
    await store.enqueue(new_run())
    assert await asyncio.wait_for(store.wait_for_work(BOUND_S), BOUND_S) is True
    # consumed: the next wait has nothing new
    assert await store.wait_for_work(0.01) is False


async def test_a_waiter_is_woken_by_an_enqueue(store: Store) -> None:
    waiter = asyncio.ensure_future(store.wait_for_work(BOUND_S * 3))
    await asyncio.sleep(0)  # let it start waiting
    await store.enqueue(new_run())
    assert await asyncio.wait_for(waiter, BOUND_S) is True


async def test_a_retry_wakes_and_a_final_failure_does_not(store: Store) -> None:
    await store.enqueue(new_run("r1", created_at=T0))
    await store.enqueue(new_run("r2", created_at=T0))
    await store.wait_for_work(0)  # consume the enqueues
    first = await claim_one(store, "w1", t(0))
    await store.finish_attempt(first.run.id, 1, "w1", failed(), t(1), retry_at=t(2))
    assert await asyncio.wait_for(store.wait_for_work(BOUND_S), BOUND_S) is True
    second = await claim_one(store, "w1", t(0))
    await store.finish_attempt(second.run.id, 1, "w1", failed(), t(1), retry_at=None)
    assert await store.wait_for_work(0.01) is False


async def test_an_idempotent_repeat_does_not_wake(store: Store) -> None:
    await store.enqueue(new_run(key="k"))
    await store.wait_for_work(0)
    _, created = await store.enqueue(new_run(key="k"))
    assert not created
    assert await store.wait_for_work(0.01) is False


async def test_next_available_at_is_the_earliest_pending_due_time(store: Store) -> None:
    assert await store.next_available_at() is None
    await store.enqueue(new_run("later", created_at=T0, run_at=t(60)))
    assert await store.next_available_at() == t(60)
    await store.enqueue(new_run("now", created_at=t(1)))
    assert await store.next_available_at() == t(1)
    claimed = await claim_one(store, "w1", t(2))
    assert claimed.run.id == "now"
    # running runs do not count; a retry coming due does
    assert await store.next_available_at() == t(60)
    await store.finish_attempt("now", 1, "w1", failed(), t(3), retry_at=t(3.5))
    assert await store.next_available_at() == t(3.5)
    # a cancelled (terminal) run does not count
    await store.request_cancel("now", t(4))
    await store.request_cancel("later", t(4))
    assert await store.next_available_at() is None
