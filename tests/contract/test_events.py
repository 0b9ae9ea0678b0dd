"""The durable event log (issue 17) on every store: the events each change writes, in order,
tenant-scoped reads, filters, ``through`` for filtered readers, bounds and pruning."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mcpexec.models import FailureKind
from mcpexec.schedules import ScheduleSpec
from mcpexec.store.base import (
    EventQuery,
    FirePlan,
    ScheduleChange,
    Store,
    TenantRecord,
    WorkflowEvent,
)

from .contract_helpers import OK, T0, claim_one, failed, new_run, t
from .test_tasks_schedules import batch, schedule
from .test_workflows import wrun

pytestmark = pytest.mark.anyio

FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def _all(store: Store, **query: object) -> list[tuple[str, str, dict[str, object]]]:
    found = await store.read_events(EventQuery(limit=1000, **query))  # type: ignore[arg-type]
    return [(e.type, e.subject, e.data) for e in found.events]


async def test_an_empty_log(store: Store) -> None:
    assert await store.event_bounds() == (0, 0)
    found = await store.read_events(EventQuery())
    assert (found.events, found.through) == ([], 0)
    assert await store.prune_events(0, datetime.now(UTC)) == 0


async def test_a_run_life_is_logged_with_its_attempts(store: Store) -> None:
    await store.enqueue(new_run("r1", created_at=T0))
    first = await claim_one(store, "w1", t(0))
    await store.finish_attempt("r1", first.attempt, "w1", failed(), t(1), retry_at=t(2))
    second = await claim_one(store, "w1", t(3))
    await store.request_cancel("r1", t(4))
    await store.finish_attempt("r1", second.attempt, "w1", OK, t(5), retry_at=None)
    events = await _all(store)
    assert [(kind, subject) for kind, subject, _ in events] == [
        ("run.submitted", "r1"),
        ("run.started", "r1"),
        ("run.retrying", "r1"),
        ("run.started", "r1"),
        ("run.cancel_requested", "r1"),
        ("run.finished", "r1"),
    ]
    datas = [data for _, _, data in events]
    assert datas[0]["status"] == "pending"
    assert [d["attempt"] for d in datas] == [0, 1, 1, 2, 2, 2]
    assert datas[1]["worker_id"] == "w1"
    assert datas[2]["failure_kind"] == FailureKind.EXIT_CODE.value
    assert (datas[5]["status"], datas[5]["exit_code"]) == ("completed", 0)
    found = await store.read_events(EventQuery())
    ids = [e.id for e in found.events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(e.tenant == "default" and e.at.tzinfo is not None for e in found.events)
    assert await store.event_bounds() == (ids[0], ids[-1])


async def test_cancelling_a_pending_run_finishes_it(store: Store) -> None:
    await store.enqueue(new_run("r1"))
    await store.request_cancel("r1", t(1))
    events = await _all(store)
    assert [k for k, _, _ in events] == ["run.submitted", "run.finished"]
    assert events[1][2]["status"] == "cancelled"


async def test_an_idempotent_repeat_logs_nothing(store: Store) -> None:
    await store.enqueue(new_run("r1", key="k"))
    await store.enqueue(new_run("r2", key="k"))
    assert len(await _all(store)) == 1


async def test_reads_are_scoped_filtered_and_paged(store: Store) -> None:
    await store.create_tenant(TenantRecord("acme", T0))
    await store.enqueue(new_run("a1"))
    await store.enqueue(new_run("b1", tenant="acme"))
    await store.enqueue(dataclasses.replace(new_run("a2"), owner="p1"))
    await claim_one(store, "w1", t(0))
    assert {s for _, s, _ in await _all(store, tenant="default", owner="p1")} == {"a2"}
    assert {s for _, s, _ in await _all(store, tenant="acme")} == {"b1"}
    assert [s for _, s, _ in await _all(store, tenant="default", type_prefix="run.sub")] == [
        "a1",
        "a2",
    ]
    assert next(k for k, _, _ in await _all(store, subject="a1")) == "run.submitted"
    everything = (await store.read_events(EventQuery(limit=100))).events
    page = await store.read_events(EventQuery(limit=2))
    assert [e.id for e in page.events] == [e.id for e in everything[:2]]
    assert page.through == everything[1].id
    rest = await store.read_events(EventQuery(after=page.through, limit=100))
    assert [e.id for e in rest.events] == [e.id for e in everything[2:]]
    # A filter that keeps nothing still reads through to the newest event.
    none = await store.read_events(EventQuery(tenant="nobody"))
    assert (none.events, none.through) == ([], everything[-1].id)


async def test_schedule_changes_are_logged(store: Store) -> None:
    rec = await store.create_schedule(schedule("s1"))
    paused = ScheduleSpec.model_validate({"every": "60s", "paused": True})
    await store.update_schedule("s1", ScheduleChange(paused, None, {"day": "x"}, None, T0, t(1)))
    again = ScheduleSpec.model_validate({"every": "60s"})
    await store.update_schedule("s1", ScheduleChange(again, None, {"day": "x"}, t(60), T0, t(2)))
    await store.update_schedule("s1", ScheduleChange(again, None, {"day": "y"}, t(60), T0, t(3)))
    fire = FirePlan("2026-01-01T12:01:00Z", t(60), "started", new_run("r1"))
    await store.record_fires(batch(rec, 61, [fire]))
    await store.delete_schedule("s1")
    events = await _all(store)
    kinds = [(k, s) for k, s, _ in events if k.startswith("schedule.")]
    assert kinds == [
        ("schedule.created", "s1"),
        ("schedule.paused", "s1"),
        ("schedule.resumed", "s1"),
        ("schedule.updated", "s1"),
        ("schedule.fired", "s1"),
        ("schedule.deleted", "s1"),
    ]
    fired = next(d for k, _, d in events if k == "schedule.fired")
    assert (fired["outcome"], fired["run_id"]) == ("started", "r1")
    assert events[0][2] == {"task": "report", "paused": False}
    assert ("run.submitted", "r1") in [(k, s) for k, s, _ in events]


async def test_workflow_changes_are_logged(store: Store) -> None:
    created = await store.create_workflow_run(
        wrun("w1"), [WorkflowEvent(run_id="w1", at=t(0), kind="queued")]
    )
    step = WorkflowEvent(run_id="w1", at=t(1), kind="step_started", step="a")
    await store.update_workflow_run("w1", created.revision, "running", {}, t(1), [step])
    events = await _all(store)
    assert [(k, s) for k, s, _ in events] == [
        ("workflow.queued", "w1"),
        ("workflow.status", "w1"),
        ("workflow.step_started", "w1"),
    ]
    assert events[1][2] == {"workflow": "pipe", "status": "running"}
    assert events[2][2] == {"workflow": "pipe", "status": "running", "step": "a"}


async def test_pruning_keeps_the_newest_and_moves_the_bounds(store: Store) -> None:
    for n in range(6):
        await store.enqueue(new_run(f"r{n}"))
    lo, hi = await store.event_bounds()
    assert hi - lo == 5
    # Nothing beyond keep and nothing old: nothing to do.
    assert await store.prune_events(10, FAR_PAST) == 0
    assert await store.prune_events(4, FAR_PAST) == 2
    assert await store.event_bounds() == (lo + 2, hi)
    assert await store.prune_events(4, FAR_PAST, limit=1) == 0
    # By age: everything is older than tomorrow, but the newest stays.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert await store.prune_events(100, tomorrow, limit=2) == 2
    assert await store.prune_events(100, tomorrow) == 1
    assert await store.event_bounds() == (hi, hi)
    assert await store.prune_events(0, tomorrow) == 0
    # Ids are never reused after a prune.
    await store.enqueue(new_run("later"))
    assert (await store.event_bounds())[1] > hi


async def test_a_reader_racing_concurrent_writers_skips_nothing(store: Store) -> None:
    # Ids must appear in commit order: a reader that moved past id N never finds a smaller one
    # later (on PostgreSQL, concurrent transactions commit in any order).
    seen: list[int] = []
    done = False

    async def reader() -> None:
        after = 0
        while True:
            finished = done  # read once more after the writers are done
            batch = await store.read_events(EventQuery(after=after, limit=7))
            seen.extend(e.id for e in batch.events)
            after = batch.through
            if finished and not batch.events:
                return
            await asyncio.sleep(0)

    async def writer(n: int) -> None:
        for i in range(8):
            await store.enqueue(new_run(f"c{n}-{i}"))

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(6)))
    done = True
    await asyncio.wait_for(task, 30)
    everything = [e.id for e in (await store.read_events(EventQuery(limit=1000))).events]
    assert len(everything) == 48
    assert seen == everything
