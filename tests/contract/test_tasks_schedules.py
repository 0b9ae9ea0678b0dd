"""The store contract of tasks and schedules (issue 11), on every store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from mcpexec.errors import Conflict
from mcpexec.models import RunFilter
from mcpexec.schedules import ScheduleSpec
from mcpexec.store.base import FireBatch, FirePlan, ScheduleChange, ScheduleRecord, Store
from mcpexec.tasks import TaskDefinition

from .contract_helpers import T0, new_run, t

pytestmark = pytest.mark.anyio


def task(name: str = "report", shell: str = "echo hi", **extra: object) -> TaskDefinition:
    return TaskDefinition.model_validate({"name": name, "shell": shell, **extra})


def schedule(sid: str = "s1", tenant: str = "default", **spec: object) -> ScheduleRecord:
    return ScheduleRecord(
        id=sid,
        tenant=tenant,
        owner="tok1",
        task="report",
        task_version=None,
        params={"day": "x"},
        spec=ScheduleSpec.model_validate(spec or {"every": "60s"}),
        created_at=T0,
        handled_until=T0,
        next_fire_at=t(60),
    )


def batch(
    rec: ScheduleRecord, now_s: float, fires: list[FirePlan], missed: int = 0, **kw: object
) -> FireBatch:
    return FireBatch(
        schedule_id=rec.id,
        expected_handled_until=kw.pop("expected", rec.handled_until),  # type: ignore[arg-type]
        handled_until=t(now_s),
        next_fire_at=t(now_s + 60),
        fires=fires,
        missed=missed,
        now=t(now_s),
        **kw,  # type: ignore[arg-type]
    )


async def test_define_is_idempotent_and_versions_are_immutable(store: Store) -> None:
    v1, created = await store.define_task("default", "tok1", task(), T0)
    assert (v1.version, created) == (1, True)
    again, created = await store.define_task("default", "tok2", task(network=False), t(1))
    assert (again.version, created, again.owner) == (1, False, "tok1")
    v2, created = await store.define_task("default", "tok1", task(shell="echo v2"), t(2))
    assert (v2.version, created) == (2, True)
    back, created = await store.define_task("default", "tok1", task(), t(3))
    assert (back.version, created) == (3, True)  # going back is a change
    first = await store.get_task("default", "report", 1)
    assert first is not None
    assert first.definition.shell == "echo hi"
    assert first.content_hash == v1.content_hash == back.content_hash
    latest = await store.get_task("default", "report", None)
    assert latest is not None
    assert latest.version == 3
    assert [v.version for v in await store.task_versions("default", "report")] == [1, 2, 3]
    assert await store.get_task("other", "report", None) is None


async def test_tasks_are_per_tenant_and_archive_keeps_versions(store: Store) -> None:
    await store.define_task("default", "tok1", task(), T0)
    await store.define_task("acme", "tok9", task(shell="echo acme"), T0)
    await store.define_task("default", "tok1", task("other"), T0)
    assert [(r.tenant, r.name) for r in await store.list_tasks(None)] == [
        ("acme", "report"),
        ("default", "other"),
        ("default", "report"),
    ]
    assert [r.name for r in await store.list_tasks("default")] == ["other", "report"]
    assert await store.archive_task("default", "report")
    assert not await store.archive_task("default", "nope")
    assert [r.name for r in await store.list_tasks("default")] == ["other"]
    archived = await store.list_tasks("default", archived=True)
    assert [(r.name, r.archived) for r in archived] == [("other", False), ("report", True)]
    kept = await store.get_task("default", "report", 1)
    assert kept is not None
    assert kept.archived
    again, created = await store.define_task("default", "tok1", task(), t(5))
    assert (again.version, created, again.archived) == (1, False, False)


async def test_runs_record_their_task_and_filter_by_it(store: Store) -> None:
    plain = new_run()
    tasked = dataclasses.replace(
        new_run(), task="report", task_version=2, params={"n": 1}, estimated_duration_ms=1500
    )
    await store.enqueue(plain)
    run, _ = await store.enqueue(tasked)
    assert (run.task, run.task_version, run.params, run.estimated_duration_ms) == (
        "report",
        2,
        {"n": 1},
        1500,
    )
    got = await store.get_run(tasked.id)
    assert got is not None
    assert got.params == {"n": 1}
    page = await store.list_runs(RunFilter(task="report"), 10, None)
    assert [r.id for r in page.runs] == [tasked.id]


async def test_schedule_crud_and_next_fire(store: Store) -> None:
    created = await store.create_schedule(schedule())
    assert created.next_fire_at == t(60)
    with pytest.raises(Conflict):
        await store.create_schedule(schedule())
    await store.create_schedule(dataclasses.replace(schedule("s2", "acme"), next_fire_at=t(30)))
    assert await store.next_fire_at() == t(30)
    assert [s.id for s in await store.list_schedules(None)] == ["s1", "s2"]
    assert [s.id for s in await store.list_schedules("acme")] == ["s2"]
    assert await store.get_schedule("s2", "default") is None
    assert [s.id for s in await store.due_schedules(t(45))] == ["s2"]
    paused = ScheduleSpec(every="60s", paused=True)
    change = ScheduleChange(paused, 3, {"day": "y"}, None, t(40), t(40))
    updated = await store.update_schedule("s2", change)
    assert updated is not None
    assert (updated.spec.paused, updated.task_version, updated.params) == (True, 3, {"day": "y"})
    assert updated.next_fire_at is None
    assert await store.next_fire_at() == t(60)
    assert await store.update_schedule("nope", change) is None
    assert await store.delete_schedule("s2")
    assert not await store.delete_schedule("s2")
    assert await store.get_schedule("s2", None) is None


async def test_a_fire_happens_once_and_enqueues_its_run_in_the_same_step(store: Store) -> None:
    rec = await store.create_schedule(schedule())
    fire = FirePlan("2026-01-01T12:01:00Z", t(60), "started", new_run("r1"))
    runs = await store.record_fires(batch(rec, 61, [fire], missed=3))
    assert runs is not None
    assert [r.id for r in runs] == ["r1"]
    # A second process that read the same cursor does nothing: not the fire, not its run.
    late = FirePlan("2026-01-01T12:01:00Z", t(60), "started", new_run("r2"))
    assert await store.record_fires(batch(rec, 61.5, [late])) is None
    assert await store.get_run("r2") is None
    now = await store.get_schedule("s1", None)
    assert now is not None
    assert (now.handled_until, now.next_fire_at, now.missed_count) == (t(61), t(121), 3)
    assert (now.last_run_id, now.last_outcome, now.last_fire_at) == ("r1", "started", t(60))
    # Even with the right cursor, a fire key already recorded is not fired again.
    dup = FirePlan("2026-01-01T12:01:00Z", t(60), "started", new_run("r3"))
    skip = FirePlan("2026-01-01T12:02:00Z", t(120), "skipped")
    assert await store.record_fires(batch(now, 121, [dup, skip])) == []
    assert await store.get_run("r3") is None
    after = await store.get_schedule("s1", None)
    assert after is not None
    assert (after.skipped_count, after.last_outcome, after.last_run_id) == (1, "skipped", "r1")
    history = await store.schedule_fires("s1")
    assert [(f.fire_key, f.outcome, f.run_id) for f in history] == [
        ("2026-01-01T12:02:00Z", "skipped", None),
        ("2026-01-01T12:01:00Z", "started", "r1"),
    ]


async def test_a_buffered_fire_starts_once(store: Store) -> None:
    rec = await store.create_schedule(schedule())
    buffered = FirePlan("k1", t(60), "buffered")
    assert await store.record_fires(batch(rec, 61, [buffered])) == []
    [waiting] = await store.buffered_schedules()
    assert waiting.buffered_fire == "k1"
    run = await store.start_buffered("s1", "k1", new_run("rb"))
    assert run is not None
    assert run.id == "rb"
    assert await store.start_buffered("s1", "k1", new_run("rc")) is None
    assert await store.get_run("rc") is None
    assert await store.buffered_schedules() == []
    [fire] = await store.schedule_fires("s1")
    assert (fire.outcome, fire.run_id) == ("started", "rb")


async def test_a_manual_fire_keeps_the_cursor(store: Store) -> None:
    rec = await store.create_schedule(schedule())
    manual = FirePlan("manual/x", t(10), "manual", new_run("rm"))
    runs = await store.record_fires(batch(rec, 10, [manual], manual=True, expected=t(-5)))
    assert runs is not None
    assert [r.id for r in runs] == ["rm"]
    after = await store.get_schedule("s1", None)
    assert after is not None
    assert (after.handled_until, after.next_fire_at, after.last_run_id) == (T0, t(60), "rm")
    assert await store.record_fires(batch(rec, 10, [], manual=True)) == []
    await store.delete_schedule("s1")
    assert await store.record_fires(batch(rec, 10, [], manual=True)) is None
    assert await store.schedule_fires("s1") == []
    assert await store.due_schedules(T0 + timedelta(days=1)) == []
