"""Contract: ``enqueue_many`` (the batch submit, issue 12) and the ``ids`` filter of
``list_runs`` (the bulk status read), on every store."""

from __future__ import annotations

import dataclasses

import pytest

from mcpexec.errors import BatchRefused, Conflict, IdempotencyConflict, QuotaExceeded
from mcpexec.models import Run, RunFilter, RunStatus
from mcpexec.store.base import EventQuery, NewRun, Store, TenantRecord

from .contract_helpers import LEASE, T0, claim_one, new_run

pytestmark = pytest.mark.anyio


async def _ids(store: Store, tenant: str | None = None) -> list[str]:
    page = await store.list_runs(RunFilter(tenant=tenant), 100, None)
    return sorted(r.id for r in page.runs)


async def _events(store: Store) -> list[tuple[str, str]]:
    found = await store.read_events(EventQuery(limit=1000))
    return [(e.type, e.subject) for e in found.events]


async def test_a_batch_is_stored_in_order_with_its_audit_and_events(store: Store) -> None:
    news = [
        dataclasses.replace(new_run(f"b{i}", tenant="acme"), owner="p1", token_id="k1")
        for i in range(5)
    ]
    results = await store.enqueue_many(news)
    assert [(r[0].id, r[1]) for r in results if isinstance(r, tuple)] == [
        (f"b{i}", True) for i in range(5)
    ]
    runs = [r[0] for r in results if isinstance(r, tuple)]
    assert [r.seq for r in runs] == sorted(r.seq for r in runs)  # FIFO in the batch's order
    assert all(r.status == RunStatus.PENDING for r in runs)
    assert [await store.get_run(f"b{i}") for i in range(5)] == runs
    audit = await store.list_audit("acme", 10)
    assert sorted((e.action, e.target, e.actor) for e in audit) == [
        ("submit", f"b{i}", "p1") for i in range(5)
    ]
    assert [e for e in await _events(store) if e[0] == "run.submitted"] == [
        ("run.submitted", f"b{i}") for i in range(5)
    ]
    assert (await store.stats("acme")).by_status["pending"] == 5
    assert await store.enqueue_many([]) == []
    # and they are claimable like any run
    assert (await claim_one(store)).run.id == "b0"


async def test_a_refused_item_changes_nothing_of_the_others(store: Store) -> None:
    await store.enqueue(new_run("taken"))
    await store.create_tenant(TenantRecord("small", T0, max_queued=2))
    news = [
        new_run("ok1", tenant="small"),
        new_run("taken"),  # an id that exists: Conflict
        new_run("ok2", tenant="small"),
        new_run("full", tenant="small"),  # the third of max_queued=2, counted with the batch
        new_run("ok3"),
    ]
    results = await store.enqueue_many(news)
    assert isinstance(results[1], Conflict)
    assert isinstance(results[3], QuotaExceeded)
    assert results[3].details["limit"] == "max_queued"
    assert [r[0].id for r in results if isinstance(r, tuple)] == ["ok1", "ok2", "ok3"]
    assert await _ids(store) == ["ok1", "ok2", "ok3", "taken"]
    assert await store.get_run("full") is None
    submitted = [s for t, s in await _events(store) if t == "run.submitted"]
    assert submitted == ["taken", "ok1", "ok2", "ok3"]
    assert sorted(e.target for e in await store.list_audit(None, 10)) == [
        "ok1",
        "ok2",
        "ok3",
        "taken",
    ]


async def test_the_server_queue_limit_counts_the_batch_too(store: Store) -> None:
    news = [dataclasses.replace(new_run(f"g{i}"), global_max_queued=3) for i in range(5)]
    results = await store.enqueue_many(news)
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 2
    assert refused[0].details["limit"] == "global_max_queued"
    assert await _ids(store) == ["g0", "g1", "g2"]


async def test_keys_replay_earlier_runs_and_twins_in_the_batch(store: Store) -> None:
    first, _ = await store.enqueue(new_run("old", key="k-old"))
    news = [
        new_run("n1", key="k-new"),
        new_run("n2", key="k-old"),  # replays the stored run
        new_run("n3", key="k-new"),  # replays n1, stored by this very batch
        new_run("n4", key="k-new", tenant="other"),  # keys are per tenant
    ]
    results = await store.enqueue_many(news)
    assert [(r[0].id, r[1]) for r in results if isinstance(r, tuple)] == [
        ("n1", True),
        ("old", False),
        ("n1", False),
        ("n4", True),
    ]
    assert results[1] == (first, False)
    assert await _ids(store) == ["n1", "n4", "old"]


async def test_check_replay_refuses_a_replay_in_the_transaction(store: Store) -> None:
    await store.enqueue(new_run("old", key="k", priority=1))

    def check(new: NewRun, existing: Run) -> IdempotencyConflict | None:
        if new.priority != existing.priority:
            return IdempotencyConflict(key=new.idempotency_key, run_id=existing.id)
        return None

    news = [
        new_run("same", key="k", priority=1),
        new_run("other", key="k", priority=2),
        new_run("fresh"),
    ]
    results = await store.enqueue_many(news, check_replay=check)
    assert isinstance(results[0], tuple)
    assert results[0][0].id == "old"
    assert isinstance(results[1], IdempotencyConflict)
    assert isinstance(results[2], tuple)
    assert results[2][1]
    with pytest.raises(BatchRefused) as refused:
        await store.enqueue_many(
            [new_run("x1"), new_run("other2", key="k", priority=3)],
            all_or_nothing=True,
            check_replay=check,
        )
    assert [i for i, _ in refused.value.failures] == [1]
    assert await store.get_run("x1") is None


async def test_all_or_nothing_stores_nothing_when_one_item_is_refused(store: Store) -> None:
    await store.enqueue(new_run("taken", key="kt"))
    before_events = await _events(store)
    before_audit = await store.list_audit(None, 10)
    news = [new_run("a1", key="ka"), new_run("taken"), new_run("a2")]
    with pytest.raises(BatchRefused) as refused:
        await store.enqueue_many(news, all_or_nothing=True)
    assert refused.value.code == "batch_refused"
    assert [(i, type(e)) for i, e in refused.value.failures] == [(1, Conflict)]
    assert refused.value.details["errors"][0]["index"] == 1
    assert await _ids(store) == ["taken"]
    assert await _events(store) == before_events
    assert await store.list_audit(None, 10) == before_audit
    assert (await store.stats()).by_status["pending"] == 1
    # nothing was kept of it: the same key and ids go in afterwards, after the stored run
    retried = [new_run("a1", key="ka"), new_run("a2")]
    results = await store.enqueue_many(retried, all_or_nothing=True)
    assert [r[1] for r in results if isinstance(r, tuple)] == [True, True]
    runs = [r[0] for r in results if isinstance(r, tuple)]
    taken = await store.get_run("taken")
    assert taken is not None
    assert all(r.seq > taken.seq for r in runs)
    again = await store.enqueue_many([new_run("a3", key="ka")], all_or_nothing=True)
    assert again == [(runs[0], False)]


async def test_the_ids_filter_lists_only_those_runs(store: Store) -> None:
    for i in range(6):
        await store.enqueue(new_run(f"r{i}", tenant="t1" if i < 4 else "t2"))
    claimed = await store.claim("w", 1, T0, T0 + LEASE)
    assert [c.run.id for c in claimed] == ["r0"]
    wanted = frozenset({"r0", "r2", "r4", "nope"})
    page = await store.list_runs(RunFilter(ids=wanted), 10, None)
    assert [r.id for r in page.runs] == ["r4", "r2", "r0"]  # newest first, unknown ids absent
    assert page.next_cursor is None
    scoped = await store.list_runs(RunFilter(ids=wanted, tenant="t1"), 10, None)
    assert [r.id for r in scoped.runs] == ["r2", "r0"]
    running = RunFilter(ids=wanted, status=frozenset({RunStatus.RUNNING}))
    assert [r.id for r in (await store.list_runs(running, 10, None)).runs] == ["r0"]
    paged = await store.list_runs(RunFilter(ids=wanted), 2, None)
    assert [r.id for r in paged.runs] == ["r4", "r2"]
    assert paged.next_cursor is not None
    assert (await store.list_runs(RunFilter(ids=frozenset()), 10, None)).runs == []
