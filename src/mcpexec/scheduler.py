"""The scheduler: turns due schedule fires into ordinary runs, exactly once per fire.

:meth:`Scheduler.step` is a function of an injected ``now``: for every schedule whose
``next_fire_at <= now`` it asks ``schedules.due_fires`` what is due since the schedule's cursor
(``handled_until``), decides each fire with ``overlap_decision``, and hands the whole step to
``Store.record_fires``, which writes the fire rows (unique on ``(schedule, fire time)``), the
runs and the counters in one transaction, and only if the cursor is still the one this step
read. With several ``serve``/``scheduler`` processes on one store they all compute the same
fires; one commits, the others change nothing. Correctness lives in the store, never in a
leader (Oban #1488: a stale leader lease doubled every cron job for 19 days).

:meth:`Scheduler.run_forever` sleeps until the earliest ``next_fire_at`` of all schedules (one
indexed query), at most ``MAX_SLEEP_S`` (another process may have changed a schedule; the wall
clock may have jumped), and wakes at once when this process changes a schedule. No per-second
polling of every schedule. While a ``buffer_one`` fire waits for its running run, the loop
looks at those schedules alone every ``BUFFER_POLL_S``.

Every fire's run is an ordinary run of the task (labels ``schedule=ID``, ``scheduled_for=`` the
fire time in UTC), so retries, logs, quotas and cancellation work unchanged. Its ``run_at`` is
the nominal fire time plus the schedule's deterministic jitter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from mcpexec.aio import wait_event
from mcpexec.errors import McpexecError, TaskNotFound
from mcpexec.models import utcnow
from mcpexec.schedules import (
    OverlapAction,
    OverlapPolicy,
    due_fires,
    fire_jitter,
    fire_key,
    overlap_decision,
)
from mcpexec.store.base import FireBatch, FirePlan, NewRun, ScheduleRecord

if TYPE_CHECKING:
    from mcpexec.app import App

log = logging.getLogger(__name__)

MAX_SLEEP_S = 60.0
BUFFER_POLL_S = 1.0
ERROR_BACKOFF_S = 1.0
_STARTS = (OverlapAction.START, OverlapAction.CANCEL_PREVIOUS_THEN_START)


class Scheduler:
    def __init__(
        self,
        app: App,
        *,
        clock: Callable[[], datetime] = utcnow,
        wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self._wait = wait or self._wait_for_change
        #: The sleeps the loop chose, latest last (bounded; what the tests look at).
        self.sleeps: list[float] = []

    # -- the pure-ish step -------------------------------------------------------------------
    async def step(self, now: datetime) -> int:
        """Fire what is due at ``now``; returns how many runs were enqueued."""
        started = 0
        for schedule in await self.app.store.due_schedules(now):
            started += await self._fire_due(schedule, now)
        for schedule in await self.app.store.buffered_schedules():
            started += await self._start_buffered(schedule)
        return started

    async def _fire_due(self, schedule: ScheduleRecord, now: datetime) -> int:
        spec = schedule.spec
        due = due_fires(spec, schedule.handled_until, now)
        running = await self._running(schedule.last_run_id)
        buffered = 1 if schedule.buffered_fire else 0
        plans: list[FirePlan] = []
        cancel = False
        for i, fire in enumerate(due.run):
            key = fire_key(fire)
            if spec.overlap is OverlapPolicy.CANCEL_PREVIOUS and i < len(due.run) - 1:
                # Catching up: each fire would cancel the one before; only the latest runs.
                plans.append(FirePlan(key, fire, "skipped", message="superseded by a later fire"))
                continue
            action = overlap_decision(spec.overlap, running, buffered)
            if action in _STARTS:
                try:
                    new = await self.new_fire_run(schedule, fire, key)
                except McpexecError as exc:  # task archived, params no longer valid, ...
                    plans.append(FirePlan(key, fire, "error", message=exc.message))
                    continue
                cancel = cancel or action is OverlapAction.CANCEL_PREVIOUS_THEN_START
                outcome = "started" if action is OverlapAction.START else "cancelled_previous"
                plans.append(FirePlan(key, fire, outcome, new))
                running = True
            elif action is OverlapAction.BUFFER:
                plans.append(FirePlan(key, fire, "buffered"))
                buffered = 1
            else:
                plans.append(FirePlan(key, fire, "skipped"))
        batch = FireBatch(
            schedule_id=schedule.id,
            expected_handled_until=schedule.handled_until,
            handled_until=now,
            next_fire_at=due.next_fire,
            fires=plans,
            missed=due.missed,
            now=now,
        )
        runs = await self.app.store.record_fires(batch)
        if runs is None:
            return 0  # another process handled this step
        if cancel:
            await self.cancel_previous_if_asked(schedule)
        self.app.metrics.fired(schedule.tenant, len(runs), due.missed)
        for run in runs:
            self.app.metrics.submitted(run)
        if runs:
            self.app.events.work_available()
        if due.missed:
            log.warning("schedule %s: %d fire(s) missed (older than catchup_window_s)",
                        schedule.id, due.missed)  # fmt: skip
        return len(runs)

    async def _start_buffered(self, schedule: ScheduleRecord) -> int:
        key = schedule.buffered_fire
        if key is None or await self._running(schedule.last_run_id):
            return 0
        fire = datetime.fromisoformat(key.replace("Z", "+00:00"))
        try:
            new = await self.new_fire_run(schedule, fire, key)
        except McpexecError as exc:
            log.warning("schedule %s: buffered fire %s not started: %s", schedule.id, key, exc)
            return 0
        run = await self.app.store.start_buffered(schedule.id, key, new)
        if run is None:
            return 0
        self.app.metrics.fired(schedule.tenant, 1, 0)
        self.app.metrics.submitted(run)
        self.app.events.work_available()
        return 1

    async def new_fire_run(self, schedule: ScheduleRecord, fire: datetime, key: str) -> NewRun:
        """The run of one fire: the pinned (or latest) version, the schedule's parameters."""
        record = await self.app.store.get_task(
            schedule.tenant, schedule.task, schedule.task_version
        )
        if record is None:
            raise TaskNotFound(f"no task {schedule.task!r}", task=schedule.task)
        labels = {"schedule": schedule.id, "scheduled_for": key}
        run_at = fire + fire_jitter(schedule.id, fire, schedule.spec.jitter_s)
        return await self.app.tasks.new_run(
            schedule.tenant,
            record,
            schedule.params,
            labels=labels,
            run_at=run_at,
            owner=schedule.owner,
        )

    async def cancel_previous_if_asked(self, schedule: ScheduleRecord) -> None:
        """``cancel_previous``: cancel the schedule's previous run if it is still going."""
        previous = schedule.last_run_id
        if schedule.spec.overlap is not OverlapPolicy.CANCEL_PREVIOUS or previous is None:
            return
        if not await self._running(previous):
            return
        run = await self.app.store.request_cancel(previous, utcnow())
        if run is not None:
            if run.status == "running":
                self.app.events.cancel_requested(previous)
            self.app.events.run_changed(previous)

    async def _running(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        run = await self.app.store.get_run(run_id)
        return run is not None and not run.terminal

    # -- the loop ----------------------------------------------------------------------------
    async def run_forever(self) -> None:
        while True:
            timeout = None
            try:
                await self.step(self.clock())
            except Exception:  # the store may be busy or gone for a moment: log, back off
                log.exception("scheduler step failed")
                timeout = ERROR_BACKOFF_S
            if timeout is None:
                timeout = await self.sleep_for()
            self.sleeps = [*self.sleeps[-999:], timeout]
            await self._wait(timeout)

    async def sleep_for(self) -> float:
        """Seconds until the earliest next fire of any schedule, within the bounds."""
        timeout = MAX_SLEEP_S
        upcoming = await self.app.store.next_fire_at()
        if upcoming is not None:
            timeout = min(timeout, max(0.0, (upcoming - self.clock()).total_seconds()))
        if await self.app.store.buffered_schedules(limit=1):
            timeout = min(timeout, BUFFER_POLL_S)
        return timeout

    async def _wait_for_change(self, timeout: float) -> None:
        changed = self.app.schedules.changed
        await wait_event(changed, timeout)
        changed.clear()
