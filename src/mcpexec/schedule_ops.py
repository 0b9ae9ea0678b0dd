"""Schedules as App operations (issue 11): create, get, list, update, pause, resume, delete,
trigger, next fire times, history. ``App.schedules`` is a :class:`ScheduleOps`.

Every change recomputes ``next_fire_at`` at once and sets :attr:`ScheduleOps.changed`, which
wakes this process's scheduler loop (other processes see it within their bounded sleep). The
cursor rules (``handled_until``) are those of ``docs/architecture.md``: creation, resume and a
new rhythm (cron, interval or zone changed) start from *now*, so they never catch up on time
before them; an update of anything else keeps the cursor.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from mcpexec.errors import Conflict, InvalidRequest, ScheduleNotFound, TaskArchived
from mcpexec.models import TASK_REF_PATTERN, IsoDateTime, JsonObject, Run
from mcpexec.params import validate_params
from mcpexec.schedules import (
    CatchupWindowS,
    Interval,
    JitterS,
    OverlapPolicy,
    ScheduleSpec,
    fire_key,
    next_fires,
)
from mcpexec.store.base import FireBatch, FirePlan, FireRecord, ScheduleChange, ScheduleRecord
from mcpexec.tasks import parse_task_ref
from mcpexec.tenancy import Action, Scope, scope_of

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

MAX_HISTORY = 500
_RHYTHM = ("cron", "every", "timezone", "start_at")
_RHYTHM_KIND = ("cron", "every")


class ScheduleRequest(ScheduleSpec):
    """A new schedule: the task (``NAME`` follows the latest version at each fire,
    ``NAME@VERSION`` pins one), its parameters, and when it fires."""

    task: str = Field(
        max_length=80,
        description="NAME or NAME@VERSION",
        json_schema_extra={"pattern": TASK_REF_PATTERN},
    )
    params: JsonObject = Field(default_factory=dict)

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        parse_task_ref(value)  # the message says what to write
        return value

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec.model_validate(self.model_dump(include=set(ScheduleSpec.model_fields)))


def _not_both_rhythms(schema: dict[str, Any]) -> None:
    schema["not"] = {
        "required": ["cron", "every"],
        "properties": {"cron": {"type": "string"}, "every": {"not": {"type": "null"}}},
    }


class ScheduleChanges(BaseModel):
    """A change to a schedule (``PATCH``): only the fields given change; ``cron`` replaces
    ``every`` and back. Values are checked against the rest of the schedule when applied."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_both_rhythms)

    cron: str | None = Field(default=None, min_length=1, max_length=256)
    every: Interval | None = None
    timezone: str = Field(default="UTC", max_length=64)
    start_at: IsoDateTime | None = None
    end_at: IsoDateTime | None = None
    jitter_s: JitterS = 0.0
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_s: CatchupWindowS = 3600.0
    paused: StrictBool = False
    params: JsonObject = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _same_task(cls, data: object) -> object:
        if isinstance(data, dict) and "task" in data:
            raise ValueError("a schedule's task cannot change; create another")
        return data

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


@dataclass(frozen=True)
class FireView:
    """One line of a schedule's history: the fire and its run (``None``: no run, or purged)."""

    fire: FireRecord
    run: Run | None


def first_fire_after(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The schedule's next fire after ``after`` (``None`` when paused or past ``end_at``)."""
    if spec.paused:
        return None
    found = next_fires(spec, after, 1)
    return found[0] if found else None


class ScheduleOps:
    def __init__(self, app: App) -> None:
        self.app = app
        #: Set on every change made in this process: wakes the scheduler loop at once.
        self.changed = asyncio.Event()

    async def create(self, request: ScheduleRequest, principal: Principal) -> ScheduleRecord:
        self.app._require_submit(principal)
        record = await self.app.tasks.get(request.task, principal)
        if record.archived:
            raise TaskArchived(f"task {record.name!r} is archived", task=record.name)
        validate_params(record.definition.params, request.params)  # 422 naming the param
        pinned = "@" in request.task
        spec, now = request.spec(), self.app.scheduler.clock()
        schedule = ScheduleRecord(
            id=uuid.uuid4().hex[:16],
            tenant=principal.tenant,
            owner=principal.id,  # the principal, not the token: its fires' runs are its own
            task=record.name,
            task_version=record.version if pinned else None,
            params=dict(request.params),
            spec=spec,
            created_at=now,
            handled_until=now,
            next_fire_at=first_fire_after(spec, now),
        )
        created = await self.app.store.create_schedule(schedule)
        self.changed.set()
        return created

    # A schedule is governed like the runs it starts (docs/tenancy.md): reading it needs the
    # role's ``read`` scope, changing, pausing, firing or deleting it the ``cancel`` scope (a
    # submitter: its own schedules), creating it ``submit``.
    async def get(self, schedule_id: str, principal: Principal) -> ScheduleRecord:
        found = await self.app.store.get_schedule(schedule_id, self.app._tenant_scope(principal))
        if found is None:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}", schedule_id=schedule_id)
        self.app.check_access(
            principal, Action.READ, found.tenant, found.owner, what="schedule", ident=schedule_id
        )
        return found

    async def _changeable(self, schedule_id: str, principal: Principal) -> ScheduleRecord:
        found = await self.get(schedule_id, principal)  # first: another tenant's is not found
        self.app._require_submit(principal)
        self.app.check_access(
            principal, Action.CANCEL, found.tenant, found.owner, what="schedule", ident=schedule_id
        )
        return found

    async def list_schedules(self, principal: Principal) -> list[ScheduleRecord]:
        found = await self.app.store.list_schedules(self.app._tenant_scope(principal))
        if scope_of(principal.role, Action.READ) is Scope.OWN:
            found = [s for s in found if s.owner == principal.id]
        return found

    async def update(
        self, schedule_id: str, changes: dict[str, Any], principal: Principal
    ) -> ScheduleRecord:
        """Change the spec fields given (``cron`` replaces ``every`` and back) and/or
        ``params``; takes effect at once. A null ``cron`` or ``every`` changes nothing: a
        schedule always has one, and giving the other switches."""
        current = await self._changeable(schedule_id, principal)
        changes = {k: v for k, v in changes.items() if not (k in _RHYTHM_KIND and v is None)}
        params = changes.pop("params", current.params)
        if "task" in changes:
            raise InvalidRequest("a schedule's task cannot change; create another", field="task")
        data = current.spec.model_dump()
        if changes.get("cron") is not None:
            data["every"] = None
        if changes.get("every") is not None:
            data["cron"] = None
        window = {k: changes.get(k, data.get(k)) for k in ("start_at", "end_at")}
        if _ends_before_it_starts(window) and not {"start_at", "end_at"} <= changes.keys():
            # Valid on its own, it clashes with the schedule's stored bound: a conflict with
            # the schedule as it is (409), not a malformed request (422).
            kept = "end_at" if "start_at" in changes else "start_at"
            raise Conflict(
                f"the schedule's {kept} ({data[kept].isoformat()}) leaves no window with that "
                "value: change start_at and end_at together",
                field=kept,
            )
        try:
            spec = ScheduleSpec.model_validate({**data, **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "schedule"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise InvalidRequest(f"{field}: {message}", field=field) from None
        if not isinstance(params, dict):
            raise InvalidRequest("params must be an object", field="params")
        version = current.task_version
        task = await self.app.tasks.get(
            current.task if version is None else f"{current.task}@{version}", principal
        )
        validate_params(task.definition.params, params)
        rhythm = any(getattr(spec, k) != getattr(current.spec, k) for k in _RHYTHM)
        now = self.app.scheduler.clock()
        handled = now if rhythm or (current.spec.paused and not spec.paused) else None
        return await self._save(current, spec, params, handled, now)

    async def pause(self, schedule_id: str, principal: Principal) -> ScheduleRecord:
        return await self.update(schedule_id, {"paused": True}, principal)

    async def resume(self, schedule_id: str, principal: Principal) -> ScheduleRecord:
        """Fires from now on; the time paused is neither run nor counted missed."""
        return await self.update(schedule_id, {"paused": False}, principal)

    async def delete(self, schedule_id: str, principal: Principal) -> None:
        await self._changeable(schedule_id, principal)
        await self.app.store.delete_schedule(schedule_id)
        self.changed.set()

    async def trigger(self, schedule_id: str, principal: Principal) -> Run:
        """Fire now, by hand: a run at once whatever the overlap policy (a person asked),
        except that ``cancel_previous`` still cancels the previous run. The cursor stays."""
        current = await self._changeable(schedule_id, principal)
        now = self.app.scheduler.clock()
        key = "manual/" + fire_key(now)
        new = await self.app.scheduler.new_fire_run(current, now, key)
        plan = FirePlan(fire_key=key, fire_at=now, outcome="manual", run=new)
        batch = FireBatch(
            schedule_id=current.id,
            expected_handled_until=current.handled_until,
            handled_until=current.handled_until,
            next_fire_at=current.next_fire_at,
            fires=[plan],
            missed=0,
            now=now,
            manual=True,
        )
        await self.app.scheduler.cancel_previous_if_asked(current)
        runs = await self.app.store.record_fires(batch)
        if not runs:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}", schedule_id=schedule_id)
        self.app.metrics.fired(current.tenant, 1, 0)
        self.app.metrics.submitted(runs[0])
        self.app.events.work_available()
        return runs[0]

    async def next(self, schedule_id: str, n: int, principal: Principal) -> list[datetime]:
        """The next ``n`` fire times in the schedule's zone ([] while paused)."""
        if not 1 <= n <= 100:
            raise InvalidRequest("n must be between 1 and 100", field="n")
        current = await self.get(schedule_id, principal)
        if current.spec.paused:
            return []
        return next_fires(current.spec, max(current.handled_until, self.app.scheduler.clock()), n)

    async def history(
        self, schedule_id: str, principal: Principal, limit: int = 50
    ) -> list[FireView]:
        """Every recorded fire, the latest first, with its run (status, duration)."""
        await self.get(schedule_id, principal)
        fires = await self.app.store.schedule_fires(schedule_id, max(1, min(limit, MAX_HISTORY)))
        out = []
        for fire in fires:
            run = None if fire.run_id is None else await self.app.store.get_run(fire.run_id)
            out.append(FireView(fire, run))
        return out

    async def _save(
        self,
        current: ScheduleRecord,
        spec: ScheduleSpec,
        params: dict[str, Any],
        handled_until: datetime | None,
        now: datetime,
    ) -> ScheduleRecord:
        handled = current.handled_until if handled_until is None else handled_until
        change = ScheduleChange(
            spec=spec,
            task_version=current.task_version,
            params=params,
            next_fire_at=first_fire_after(spec, handled),
            handled_until=handled,
            updated_at=now,
        )
        saved = await self.app.store.update_schedule(current.id, change)
        if saved is None:
            raise ScheduleNotFound(f"no schedule {current.id!r}", schedule_id=current.id)
        self.changed.set()
        return saved


def schedule_view(schedule: ScheduleRecord) -> dict[str, Any]:
    """A schedule as REST and MCP show it; fire times in the schedule's zone."""
    zone = schedule.spec.zone

    def local(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(zone).isoformat()

    spec = schedule.spec.model_dump(mode="json", exclude_none=True)
    return {
        "id": schedule.id,
        "tenant": schedule.tenant,
        "owner": schedule.owner,
        "task": schedule.task,
        "task_version": schedule.task_version,
        "params": schedule.params,
        **spec,
        "next_fire_at": local(schedule.next_fire_at),
        "last_fire_at": local(schedule.last_fire_at),
        "last_run_id": schedule.last_run_id,
        "last_outcome": schedule.last_outcome,
        "missed_count": schedule.missed_count,
        "skipped_count": schedule.skipped_count,
        "buffered": schedule.buffered_fire is not None,
        "created_at": schedule.created_at.isoformat(),
    }


def fire_view(line: FireView) -> dict[str, Any]:
    """One fire of the history: time, outcome, run id, run status and duration."""
    run = line.run
    duration = None
    if run is not None and run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    return {
        "fire_key": line.fire.fire_key,
        "scheduled_for": line.fire.fire_at.isoformat(),
        "outcome": line.fire.outcome,
        "message": line.fire.message,
        "run_id": line.fire.run_id,
        "status": None if run is None else run.status.value,
        "started_at": None if run is None or run.started_at is None else run.started_at.isoformat(),
        "duration_s": duration,
    }


def _ends_before_it_starts(window: dict[str, Any]) -> bool:
    """``end_at`` before ``start_at``, both given with a time zone (a naive one is left to
    ``ScheduleSpec``'s own message)."""
    start, end = window["start_at"], window["end_at"]
    aware = all(isinstance(v, datetime) and v.tzinfo is not None for v in (start, end))
    return aware and end < start
