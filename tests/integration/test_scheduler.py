"""The scheduler on a real App (SQLite, real processes) driven by an injected clock: seed 000
US2 through the real loop, each overlap policy with a run that outlasts its period, catch-up
after downtime, and the schedule operations (update, pause, resume, trigger, next, history)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mcpexec.app import App
from mcpexec.errors import Conflict, InvalidRequest, ScheduleNotFound
from mcpexec.models import Run, RunFilter
from mcpexec.schedule_ops import ScheduleRequest
from mcpexec.scheduler import Scheduler
from mcpexec.schedules import OverlapPolicy
from mcpexec.store.base import ScheduleRecord

from .task_app import ADMIN, ALICE, real_app, task, until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Done(Exception):
    """Ends the loop when the simulated time is over."""


class SimClock:
    """Simulated wall time. The loop's sleep jumps it forward, once the runs started so far
    (real processes) have finished."""

    def __init__(self, app: App, start: datetime, end: datetime) -> None:
        self.app, self.now, self.end = app, start, end

    def __call__(self) -> datetime:
        return self.now

    async def wait(self, timeout: float) -> None:
        for run in (await self.app.list_runs(ADMIN, RunFilter(), 500)).runs:
            if not run.terminal:
                await until(self.app, run.id, "completed")
        self.now += timedelta(seconds=timeout)
        if self.now >= self.end:
            raise Done


def use_clock(app: App, clock: Callable[[], datetime]) -> Scheduler:
    app.scheduler = Scheduler(app, clock=clock)
    return app.scheduler


async def schedule_runs(app: App, schedule_id: str) -> list[Run]:
    page = await app.list_runs(ADMIN, RunFilter(labels={"schedule": schedule_id}), 500)
    return sorted(page.runs, key=lambda r: r.seq)


async def test_seed_000_us2_every_minute_for_ten_simulated_minutes(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        clock = SimClock(app, at(30), at(10 * 60 + 30))
        app.scheduler = Scheduler(app, clock=clock, wait=clock.wait)
        await app.tasks.define(task("shell: echo tick"), ADMIN)
        created = await app.schedules.create(
            ScheduleRequest(task="report", cron="* * * * *"), ADMIN
        )
        assert created.next_fire_at == at(60)
        with pytest.raises(Done):
            await app.scheduler.run_forever()
        runs = await schedule_runs(app, created.id)
        expected = [f"2026-01-01T12:{m:02d}:00Z" for m in range(1, 11)]
        assert [r.labels["scheduled_for"] for r in runs] == expected
        assert [r.run_at for r in runs] == [at(60 * m) for m in range(1, 11)]
        assert all(r.status == "completed" and r.task == "report" for r in runs)
        # The loop slept until each next fire, never polled: 30 s to 12:01, then a minute each.
        assert app.scheduler.sleeps == [30.0] + [60.0] * 10
        history = await app.schedules.history(created.id, ADMIN)
        assert [(h.fire.fire_key, h.fire.outcome) for h in reversed(history)] == [
            (key, "started") for key in expected
        ]
        assert [h.run.status for h in history if h.run] == ["completed"] * 10
        status = await app.schedules.get(created.id, ADMIN)
        assert (status.missed_count, status.skipped_count, status.last_outcome) == (0, 0, "started")
        assert status.next_fire_at == at(11 * 60)


async def start_overlapping(app: App, policy: str) -> tuple[ScheduleRecord, Run]:
    """A schedule every 60 s whose run lasts far longer; the first fire's run is running."""
    use_clock(app, lambda: T0)
    await app.tasks.define(task("shell: sleep 60"), ADMIN)
    created = await app.schedules.create(
        ScheduleRequest(task="report", every="60s", overlap=OverlapPolicy(policy)), ADMIN
    )
    assert await app.scheduler.step(at(60)) == 1
    [first] = await schedule_runs(app, created.id)
    await until(app, first.id, "running")
    return created, first


async def outcomes(app: App, schedule_id: str) -> list[tuple[str, str]]:
    history = await app.schedules.history(schedule_id, ADMIN)
    return [(h.fire.fire_key[11:19], h.fire.outcome) for h in reversed(history)]


async def test_overlap_skip(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        created, first = await start_overlapping(app, "skip")
        assert await app.scheduler.step(at(120)) == 0
        assert await outcomes(app, created.id) == [("12:01:00", "started"), ("12:02:00", "skipped")]
        status = await app.schedules.get(created.id, ADMIN)
        assert (status.skipped_count, status.last_run_id) == (1, first.id)
        await app.cancel(first.id, ADMIN)


async def test_overlap_allow_all(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        created, first = await start_overlapping(app, "allow_all")
        assert await app.scheduler.step(at(120)) == 1
        runs = await schedule_runs(app, created.id)
        assert [r.labels["scheduled_for"][11:19] for r in runs] == ["12:01:00", "12:02:00"]
        await until(app, runs[1].id, "running")
        assert (await app.get(first.id, ADMIN)).status == "running"  # both at once
        for run in runs:
            await app.cancel(run.id, ADMIN)


async def test_overlap_cancel_previous(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        created, first = await start_overlapping(app, "cancel_previous")
        assert await app.scheduler.step(at(120)) == 1
        cancelled = await until(app, first.id, "cancelled")
        assert cancelled.failure is not None
        runs = await schedule_runs(app, created.id)
        await until(app, runs[1].id, "running")
        assert await outcomes(app, created.id) == [
            ("12:01:00", "started"),
            ("12:02:00", "cancelled_previous"),
        ]
        await app.cancel(runs[1].id, ADMIN)


async def test_overlap_buffer_one(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        created, first = await start_overlapping(app, "buffer_one")
        assert await app.scheduler.step(at(120)) == 0  # buffered
        assert await app.scheduler.step(at(180)) == 0  # the buffer holds one: skipped
        assert await app.scheduler.sleep_for() <= 1.0  # watching the running run
        assert await app.scheduler.step(at(185)) == 0  # still running: still waiting
        await app.cancel(first.id, ADMIN)
        await until(app, first.id, "cancelled")
        assert await app.scheduler.step(at(190)) == 1  # the buffered fire starts now
        runs = await schedule_runs(app, created.id)
        assert [r.labels["scheduled_for"][11:19] for r in runs] == ["12:01:00", "12:02:00"]
        assert await outcomes(app, created.id) == [
            ("12:01:00", "started"),
            ("12:02:00", "started"),
            ("12:03:00", "skipped"),
        ]
        assert await app.scheduler.step(at(191)) == 0  # once
        await app.cancel(runs[1].id, ADMIN)


@pytest.mark.parametrize(("policy", "started"), [("allow_all", 3), ("skip", 1)])
async def test_catch_up_after_ten_periods_down_is_bounded(
    tmp_path: Path, policy: str, started: int
) -> None:
    async with real_app(tmp_path) as app:
        use_clock(app, lambda: T0)
        await app.tasks.define(task('shell: "true"'), ADMIN)
        request = ScheduleRequest(
            task="report", every="60s", catchup_window_s=150, overlap=OverlapPolicy(policy)
        )
        created = await app.schedules.create(request, ADMIN)
        # Nothing ran for ten periods (the server was down); now it is 12:10:01.
        assert await app.scheduler.step(at(601)) == started
        runs = await schedule_runs(app, created.id)
        assert [r.labels["scheduled_for"][11:19] for r in runs] == [
            "12:08:00",
            "12:09:00",
            "12:10:00",
        ][:started]
        status = await app.schedules.get(created.id, ADMIN)
        assert status.missed_count == 7  # 12:01 .. 12:07, counted, not run
        assert status.skipped_count == 3 - started
        assert status.next_fire_at == at(660)
        assert len(await app.schedules.history(created.id, ADMIN)) == 3  # missed: no rows


async def test_schedule_operations(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        now = [T0]
        use_clock(app, lambda: now[0])
        await app.tasks.define(
            task(
                "shell: echo $MCPEXEC_PARAM_N\n"
                "params: {type: object, properties: {n: {type: integer}}}"
            ),
            ALICE,
        )
        with pytest.raises(InvalidRequest) as bad:
            await app.schedules.create(
                ScheduleRequest(task="report", every="1m", params={"n": "x"}), ALICE
            )
        assert bad.value.details["param"] == "n"
        request = ScheduleRequest(
            task="report@1", cron="0 3 * * *", timezone="Europe/Berlin", params={"n": 1}
        )
        created = await app.schedules.create(request, ALICE)
        assert (created.tenant, created.owner, created.task_version) == ("acme", "tok-alice", 1)
        assert app.schedules.changed.is_set()
        nxt = await app.schedules.next(created.id, 3, ALICE)
        assert [d.isoformat() for d in nxt] == [
            "2026-01-02T03:00:00+01:00",
            "2026-01-03T03:00:00+01:00",
            "2026-01-04T03:00:00+01:00",
        ]
        assert [s.id for s in await app.schedules.list_schedules(ALICE)] == [created.id]
        other = ADMIN.__class__("tok-bob", "bob", "submitter", "other")
        with pytest.raises(ScheduleNotFound):
            await app.schedules.get(created.id, other)

        now[0] = at(3600)
        updated = await app.schedules.update(created.id, {"every": "30m"}, ALICE)
        assert (updated.spec.cron, updated.spec.every) == (None, "30m")
        assert updated.handled_until == at(3600)  # a new rhythm starts now
        assert updated.next_fire_at == at(5400)
        paused = await app.schedules.pause(created.id, ALICE)
        assert paused.next_fire_at is None
        assert await app.schedules.next(created.id, 3, ALICE) == []
        assert await app.scheduler.step(at(7200)) == 0
        now[0] = at(9000)
        resumed = await app.schedules.resume(created.id, ALICE)
        assert (resumed.handled_until, resumed.next_fire_at) == (at(9000), at(10800))
        with pytest.raises(InvalidRequest):
            await app.schedules.update(created.id, {"overlap": "sometimes"}, ALICE)
        # A window: a bound that clashes with the stored other one is a conflict with the
        # schedule as it is (409, naming the stored bound); both given inverted are malformed.
        window = {"start_at": at(0), "end_at": at(86400)}
        assert (await app.schedules.update(created.id, window, ALICE)).spec.end_at == at(86400)
        for change, kept in (
            ({"start_at": at(90000)}, "end_at"),
            ({"end_at": at(-60)}, "start_at"),
        ):
            with pytest.raises(Conflict) as clash:
                await app.schedules.update(created.id, change, ALICE)
            assert clash.value.details["field"] == kept
            assert kept in clash.value.message
        with pytest.raises(InvalidRequest) as inverted:
            await app.schedules.update(
                created.id, {"start_at": at(90000), "end_at": at(86400)}, ALICE
            )
        assert "end_at is before start_at" in inverted.value.message
        moved = await app.schedules.update(created.id, {"start_at": at(60)}, ALICE)
        assert (moved.spec.start_at, moved.spec.end_at) == (at(60), at(86400))
        await app.schedules.update(created.id, {"start_at": None, "end_at": None}, ALICE)

        run = await app.schedules.trigger(created.id, ALICE)
        assert run.labels["schedule"] == created.id
        assert run.owner == ALICE.id  # a submitter reads the runs of its own schedules
        assert (run.task_version, run.params) == (1, {"n": 1})
        await until(app, run.id, "completed")
        [line] = await app.schedules.history(created.id, ALICE)
        assert (line.fire.outcome, line.run.id if line.run else None) == ("manual", run.id)
        assert (await app.schedules.get(created.id, ALICE)).handled_until == at(9000)

        await app.schedules.delete(created.id, ALICE)
        with pytest.raises(ScheduleNotFound):
            await app.schedules.get(created.id, ALICE)
        assert (await app.get(run.id, ALICE)).status == "completed"  # its runs stay
