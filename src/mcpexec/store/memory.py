"""``MemoryStore``: the store contract on plain dicts, for unit tests.

Atomicity: every method body runs without an ``await``, so on one event loop each operation is
atomic and isolated from every other, exactly like one short transaction. Nothing is durable and
nothing is shared between processes. Values cross the boundary as copies (results through JSON,
as the SQLite store does) so that a caller cannot mutate stored state by accident.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcpexec.errors import BatchRefused, Conflict, McpexecError
from mcpexec.models import (
    Artifact,
    Attempt,
    Failure,
    FailureKind,
    Page,
    Progress,
    Run,
    RunFilter,
    RunStatus,
    Stream,
)
from mcpexec.store._memory_events import MemoryEvents
from mcpexec.store._memory_hooks import MemoryHooks
from mcpexec.store._memory_tenancy import MemoryTenancy
from mcpexec.store._memory_workflows import MemoryWorkflows
from mcpexec.store._shared import CANCELLED_MESSAGE, WorkSignal, decide_finish, to_us, utc
from mcpexec.store.base import (
    SKIPPED_OUTCOMES,
    AttemptOutcome,
    Claim,
    ClaimLimits,
    Enqueued,
    FireBatch,
    FireRecord,
    HeartbeatReply,
    HourStats,
    NewRun,
    ReplayCheck,
    RunCursor,
    ScheduleChange,
    ScheduleRecord,
    Stats,
    Store,
    TaskRecord,
    WorkerInfo,
    rollup_bucket,
)
from mcpexec.tasks import TaskDefinition, content_hash, next_version


@dataclass
class _Row:
    """A run as stored: the public ``Run`` (frozen, so replaced on every change) and the queue's
    private fields. The run's own fields are the model's: a new ``Run`` field needs nothing
    here."""

    run: Run
    available_at: datetime
    lease_expires_at: datetime | None = None
    #: The event log's hook (every change of a run goes through ``update``).
    on_change: Callable[[Run, Run], None] | None = None

    def update(self, **changes: Any) -> None:
        old = self.run
        self.run = old.model_copy(update=changes)
        if self.on_change is not None:
            self.on_change(old, self.run)

    def holds(self, attempt: int, worker_id: str) -> bool:
        run = self.run
        return (
            run.status == RunStatus.RUNNING
            and run.attempts == attempt
            and run.worker_id == worker_id
        )

    def snapshot(self) -> Run:
        """A copy the caller may keep (labels and result copied, as the SQLite store's are)."""
        run = self.run
        return run.model_copy(update={"labels": dict(run.labels), "result": _copy_json(run.result)})


def _copy_json(value: Any) -> Any:
    # Through JSON, as the SQLite store does: same copies, same refusal of non-JSON results.
    return None if value is None else json.loads(json.dumps(value))


class MemoryStore(MemoryTenancy, MemoryWorkflows, MemoryEvents, MemoryHooks, Store):
    def __init__(self) -> None:
        self._runs: dict[str, _Row] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._attempts: dict[str, list[Attempt]] = {}
        self._logs: dict[tuple[str, Stream], bytearray] = {}
        self._artifacts: dict[str, dict[str, Artifact]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._seq = 0
        self._work = WorkSignal()
        self._usage: dict[str, int] = {}  # bytes of logs + artifacts per tenant
        self._retired: list[Run] = []  # purged finished runs, still in run_history
        self._history_floor: datetime | None = None  # prune_history: no hour before this one

    async def open(self) -> None:
        pass

    def _run_changed(self, old: Run, new: Run) -> None:
        """Every change of a run: the event log, and its webhook when it ends (the triggers'
        work in the SQL dialects)."""
        self._event_log.run_changed(old, new)
        self._hooks.run_changed(old, new)

    async def wait_for_work(self, timeout: float) -> bool:
        return await self._work.wait(timeout)

    async def close(self) -> None:
        pass

    # -- runs --------------------------------------------------------------------------------
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        if new.idempotency_key is not None:
            existing = self._by_key.get((new.tenant, new.idempotency_key))
            if existing is not None:
                return self._runs[existing].snapshot(), False
        if new.id in self._runs:
            raise Conflict(f"run id {new.id!r} already exists")
        pending = [r.run.tenant for r in self._runs.values() if r.run.status == RunStatus.PENDING]
        self._check_queue(new, pending.count(new.tenant), len(pending))
        self._seq += 1
        run_at = utc(new.run_at) if new.run_at is not None else None
        created_at = utc(new.created_at)
        run = Run(
            id=new.id,
            seq=self._seq,
            tenant=new.tenant,
            status=RunStatus.PENDING,
            spec=new.spec,
            retry=new.retry,
            priority=new.priority,
            labels=dict(new.labels),
            created_at=created_at,
            idempotency_key=new.idempotency_key,
            run_at=run_at,
            rerun_of=new.rerun_of,
            task=new.task,
            task_version=new.task_version,
            params=_copy_json(new.params),
            estimated_duration_ms=new.estimated_duration_ms,
            owner=new.owner,
            worker_labels=sorted(set(new.worker_labels)),
            notify=new.notify,
        )
        log = self._event_log
        row = _Row(run=run, available_at=run_at or created_at, on_change=self._run_changed)
        self._runs[new.id] = row
        log.run_submitted(run)
        if new.idempotency_key is not None:
            self._by_key[(new.tenant, new.idempotency_key)] = new.id
        self._work.notify()
        return row.snapshot(), True

    async def enqueue_many(
        self,
        news: Sequence[NewRun],
        *,
        all_or_nothing: bool = False,
        check_replay: ReplayCheck | None = None,
    ) -> list[Enqueued]:
        # No await below but ``enqueue``'s (which awaits nothing): one atomic step. A refused
        # all-or-nothing batch is undone: its rows, keys, audit entries and events.
        seq, audited, events = self._seq, len(self._audit), self._event_log.mark()
        results: list[Enqueued] = []
        for new in news:
            try:
                run, created = await self.enqueue(new)
                refused = None if created or check_replay is None else check_replay(new, run)
                if refused is not None:
                    raise refused
                results.append((run, created))
            except McpexecError as exc:
                results.append(exc)
        failures = [(i, r) for i, r in enumerate(results) if isinstance(r, McpexecError)]
        if all_or_nothing and failures:
            for result in results:
                if isinstance(result, tuple) and result[1]:
                    row = self._runs.pop(result[0].id)
                    if row.run.idempotency_key is not None:
                        del self._by_key[(row.run.tenant, row.run.idempotency_key)]
            self._seq = seq
            del self._audit[audited:]
            self._event_log.truncate(events)
            raise BatchRefused(failures)
        return results

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        row = self._runs.get(run_id)
        if row is None or (tenant is not None and row.run.tenant != tenant):
            return None
        return row.snapshot()

    async def list_runs(self, filter: RunFilter, limit: int, cursor: RunCursor | None) -> Page:
        after = utc(filter.created_after) if filter.created_after else None
        before = utc(filter.created_before) if filter.created_before else None
        windowed = after is not None or before is not None
        found: list[Run] = []
        if limit <= 0:
            return Page(runs=found)

        def key(run: Run) -> tuple[int, int]:
            return (to_us(run.created_at) if windowed else 0, run.seq)

        for row in sorted(self._runs.values(), key=lambda r: key(r.run), reverse=True):
            run = row.run
            if cursor is not None and not _below(cursor, run, windowed):
                continue
            if filter.tenant is not None and run.tenant != filter.tenant:
                continue
            if filter.ids is not None and run.id not in filter.ids:
                continue
            if filter.status and run.status not in filter.status:
                continue
            if any(run.labels.get(k) != v for k, v in filter.labels.items()):
                continue
            if filter.task is not None and run.task != filter.task:
                continue
            if filter.owner is not None and run.owner != filter.owner:
                continue
            if filter.tool is not None and (
                run.spec.tool is None or run.spec.tool.qualified != filter.tool
            ):
                continue
            if (after and run.created_at < after) or (before and run.created_at >= before):
                continue
            if len(found) == limit:
                last = found[-1]
                at = to_us(last.created_at) if windowed else None
                return Page(runs=found, next_cursor=RunCursor(last.seq, at).token())
            found.append(row.snapshot())
        return Page(runs=found, next_cursor=None)

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_expires_at: datetime,
        limits: ClaimLimits | None = None,
    ) -> list[Claim]:
        now, lease = utc(now), utc(lease_expires_at)
        have = frozenset() if limits is None else limits.worker_labels
        ready = [
            (r.run.id, r.run.tenant, r.run.priority, r.run.seq)
            for r in self._runs.values()
            if r.run.status == RunStatus.PENDING
            and r.available_at <= now
            and not r.run.cancel_requested
            and have.issuperset(r.run.worker_labels)
        ]
        running: dict[str, int] = {}
        for r in self._runs.values():
            if r.run.status == RunStatus.RUNNING:
                running[r.run.tenant] = running.get(r.run.tenant, 0) + 1
        claims = []
        for run_id in self._fair_pick(ready, running, max(limit, 0), limits):
            row = self._runs[run_id]
            row.lease_expires_at = lease
            row.update(
                status=RunStatus.RUNNING,
                attempts=row.run.attempts + 1,
                worker_id=worker_id,
                next_attempt_at=None,
                started_at=row.run.started_at or now,
            )
            number = row.run.attempts
            self._attempts.setdefault(row.run.id, []).append(
                Attempt(
                    run_id=row.run.id,
                    number=number,
                    worker_id=worker_id,
                    status=RunStatus.RUNNING,
                    started_at=now,
                )
            )
            claims.append(Claim(run=row.snapshot(), attempt=number, lease_expires_at=lease))
        return claims

    async def next_available_at(
        self, worker_labels: Collection[str] = frozenset()
    ) -> datetime | None:
        have = frozenset(worker_labels)
        due = [
            r.available_at
            for r in self._runs.values()
            if r.run.status == RunStatus.PENDING
            and not r.run.cancel_requested
            and have.issuperset(r.run.worker_labels)
        ]
        return min(due, default=None)

    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        cancel, lost = set(), set()
        for run_id, attempt in held:
            row = self._runs.get(run_id)
            if row is None or not row.holds(attempt, worker_id):
                lost.add(run_id)
                continue
            row.lease_expires_at = utc(lease_expires_at)
            if row.run.cancel_requested:
                cancel.add(run_id)
        worker = self._workers.get(worker_id)
        if worker is not None:
            self._workers[worker_id] = dataclasses.replace(
                worker, heartbeat_at=utc(now), running=len(held) - len(lost)
            )
        return HeartbeatReply(cancel=frozenset(cancel), lost=frozenset(lost))

    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        row = self._held(run_id, attempt, worker_id)
        if row is None:
            return False
        row.update(progress=progress)
        return True

    async def finish_attempt(
        self,
        run_id: str,
        attempt: int,
        worker_id: str,
        outcome: AttemptOutcome,
        now: datetime,
        retry_at: datetime | None,
        lease_expired_before: datetime | None = None,
    ) -> Run | None:
        row = self._held(run_id, attempt, worker_id)
        if row is None:
            return None
        if lease_expired_before is not None:
            assert row.lease_expires_at is not None
            if row.lease_expires_at > utc(lease_expired_before):
                return None
        result = _copy_json(outcome.result)  # refuse non-JSON before changing anything
        now = utc(now)
        for stream, data in outcome.log_tail:
            self._append_log(row, run_id, stream, data)
        decision = decide_finish(
            outcome,
            row.run.cancel_requested,
            retry_at is not None,
            bool(self._artifacts.get(run_id)),
        )
        attempts = self._attempts[run_id]
        attempts[-1] = attempts[-1].model_copy(
            update={
                "status": decision.attempt_status,
                "finished_at": now,
                "exit_code": outcome.exit_code,
                "signal": outcome.signal,
                "failure": outcome.failure,
                "output_truncated": outcome.output_truncated,
                "isolation": outcome.isolation,
                "limits": _copy_json(outcome.limits),
            }
        )
        row.lease_expires_at = None
        changes: dict[str, Any] = {
            "status": decision.run_status,
            "failure": decision.failure,
            "partial": decision.partial,
            "exit_code": outcome.exit_code,
            "result": result,
            "output_truncated": row.run.output_truncated or outcome.output_truncated,
        }
        if decision.run_status == RunStatus.PENDING:
            assert retry_at is not None
            changes["next_attempt_at"] = row.available_at = utc(retry_at)
            self._work.notify()
        else:
            changes["finished_at"] = now
        row.update(**changes)
        return row.snapshot()

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        now = utc(now)
        rows = [
            r
            for r in self._runs.values()
            if r.run.status == RunStatus.RUNNING
            and r.lease_expires_at is not None
            and r.lease_expires_at <= now
        ]
        rows.sort(key=lambda r: (r.lease_expires_at, r.run.seq))
        return [
            Claim(run=r.snapshot(), attempt=r.run.attempts, lease_expires_at=r.lease_expires_at)
            for r in rows[:limit]
            if r.lease_expires_at is not None
        ]

    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        count = 0
        for row in self._runs.values():
            if row.run.status == RunStatus.RUNNING and row.run.worker_id == worker_id:
                # an earlier end is kept, like the SQL MIN()
                lease = row.lease_expires_at
                row.lease_expires_at = utc(now) if lease is None else min(lease, utc(now))
                count += 1
        self._workers.pop(worker_id, None)
        return count

    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        row = self._runs.get(run_id)
        if row is None or (tenant is not None and row.run.tenant != tenant):
            return None
        if row.run.status == RunStatus.PENDING:
            row.update(
                status=RunStatus.CANCELLED,
                cancel_requested=True,
                failure=Failure(kind=FailureKind.CANCELLED, message=CANCELLED_MESSAGE),
                finished_at=utc(now),
                next_attempt_at=None,
                partial=bool(self._artifacts.get(run_id)),
            )
        elif row.run.status == RunStatus.RUNNING:
            row.update(cancel_requested=True)
        return row.snapshot()

    async def attempts(self, run_id: str) -> list[Attempt]:
        return list(self._attempts.get(run_id, []))

    def _held(self, run_id: str, attempt: int, worker_id: str) -> _Row | None:
        row = self._runs.get(run_id)
        return row if row is not None and row.holds(attempt, worker_id) else None

    # -- logs and artifacts --------------------------------------------------------------------
    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        row = self._held(run_id, attempt, worker_id)
        if row is None:
            return None
        return self._append_log(row, run_id, stream, data)

    def _append_log(self, row: _Row, run_id: str, stream: Stream, data: bytes) -> int:
        log = self._logs.setdefault((run_id, stream), bytearray())
        offset = len(log)
        log += data
        self._count(row.run.tenant, len(data))
        return offset

    def _count(self, tenant: str, grown: int) -> None:
        self._usage[tenant] = max(self._usage.get(tenant, 0) + grown, 0)

    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        log = self._logs.get((run_id, stream), bytearray())
        offset = max(offset, 0)
        data = bytes(log[offset : offset + max(limit, 0)])
        return data, offset + len(data)

    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        row = self._held(artifact.run_id, artifact.attempt, worker_id)
        if row is None:
            return False
        stored = artifact.model_copy(update={"created_at": utc(artifact.created_at)})
        records = self._artifacts.setdefault(artifact.run_id, {})
        replaced = records.get(artifact.name)
        records[artifact.name] = stored
        self._count(row.run.tenant, artifact.size - (0 if replaced is None else replaced.size))
        return True

    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        return sorted(self._artifacts.get(run_id, {}).values(), key=lambda a: a.name)

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        self._workers[info.id] = dataclasses.replace(
            info, started_at=utc(info.started_at), heartbeat_at=utc(info.heartbeat_at)
        )

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        return [self._workers[k] for k in sorted(self._workers)]

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        before = utc(before)
        done = [
            r.run
            for r in self._runs.values()
            if r.run.status.terminal
            and r.run.finished_at is not None
            and r.run.finished_at < before
        ]
        done.sort(key=lambda r: (r.finished_at, r.seq))
        ids = [r.id for r in done[:limit]]
        for run_id in ids:
            run = self._runs.pop(run_id).run
            self._retired.append(run)
            if run.idempotency_key is not None:
                self._by_key.pop((run.tenant, run.idempotency_key), None)
            self._attempts.pop(run_id, None)
            freed = sum(a.size for a in self._artifacts.pop(run_id, {}).values())
            for stream in Stream:
                freed += len(self._logs.pop((run_id, stream), b""))
            self._count(run.tenant, -freed)
        return ids

    async def storage_used(self, tenant: str | None = None) -> int:
        if tenant is not None:
            return self._usage.get(tenant, 0)
        return sum(self._usage.values())

    async def tenant_load(self, tenant: str) -> tuple[int, int]:
        runs = [r.run.status for r in self._runs.values() if r.run.tenant == tenant]
        return runs.count(RunStatus.RUNNING), runs.count(RunStatus.PENDING)

    async def run_history(self, since: datetime, tenant: str | None = None) -> list[HourStats]:
        # The runs still here, plus those purged (folded into _retired at the purge), as the
        # SQL dialects' rollup keeps them.
        hours: dict[datetime, HourStats] = {}
        start = utc(since).replace(minute=0, second=0, microsecond=0)
        if self._history_floor is not None:
            start = max(start, self._history_floor)
        for run in [r.run for r in self._runs.values()] + self._retired:
            if not run.status.terminal or run.finished_at is None:
                continue
            if (tenant is not None and run.tenant != tenant) or run.finished_at < start:
                continue
            hour = run.finished_at.replace(minute=0, second=0, microsecond=0)
            stats = hours.setdefault(hour, HourStats(hour=hour))
            stats.finished[run.status.value] = stats.finished.get(run.status.value, 0) + 1
            if run.started_at is not None:
                for series, us in (
                    (stats.duration, to_us(run.finished_at) - to_us(run.started_at)),
                    (stats.wait, to_us(run.started_at) - to_us(run.run_at or run.created_at)),
                ):
                    bucket = rollup_bucket(us)
                    series[bucket] = series.get(bucket, 0) + 1
        return [hours[h] for h in sorted(hours)]

    async def prune_history(self, before: datetime, limit: int = 5000) -> int:
        # Rows of the SQL dialects' rollup: here the (tenant, hour) pairs no longer shown.
        floor = utc(before).replace(minute=0, second=0, microsecond=0)
        old = self._history_floor
        gone = {
            (run.tenant, run.finished_at.replace(minute=0, second=0, microsecond=0))
            for run in [r.run for r in self._runs.values()] + self._retired
            if run.status.terminal
            and run.finished_at is not None
            and run.finished_at < floor
            and (old is None or run.finished_at >= old)
        }
        if old is None or floor > old:
            self._history_floor = floor
        self._retired = [r for r in self._retired if r.finished_at and r.finished_at >= floor]
        return len(gone)

    async def stats(self, tenant: str | None = None) -> Stats:
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        for row in self._runs.values():
            if tenant is None or row.run.tenant == tenant:
                counts[row.run.status.value] += 1
        return Stats(by_status=counts)

    # -- tokens --------------------------------------------------------------------------------
    # == tasks and schedules (issue 11) =========================================================
    # State lives in ``_defs`` (created on first use, so ``__init__`` above stays as it was).
    @property
    def _defs(self) -> _Definitions:
        state: _Definitions | None = getattr(self, "_defs_state", None)
        if state is None:
            state = self._defs_state = _Definitions()
        return state

    async def define_task(
        self, tenant: str, owner: str, task: TaskDefinition, now: datetime
    ) -> tuple[TaskRecord, bool]:
        versions = self._defs.tasks.setdefault((tenant, task.name), [])
        latest = versions[-1] if versions else None
        version, created = next_version(
            None if latest is None else (latest.version, latest.content_hash), task
        )
        versions[:] = [dataclasses.replace(v, archived=False) for v in versions]
        if not created:
            return versions[-1], False
        record = TaskRecord(
            tenant=tenant,
            name=task.name,
            version=version,
            owner=owner,
            content_hash=content_hash(task),
            definition=task,
            created_at=utc(now),
        )
        versions.append(record)
        return record, True

    async def get_task(self, tenant: str, name: str, version: int | None) -> TaskRecord | None:
        versions = self._defs.tasks.get((tenant, name), [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def list_tasks(self, tenant: str | None, archived: bool = False) -> list[TaskRecord]:
        return [
            versions[-1]
            for (owner_tenant, _), versions in sorted(self._defs.tasks.items())
            if versions
            and (tenant is None or owner_tenant == tenant)
            and (archived or not versions[-1].archived)
        ]

    async def task_versions(self, tenant: str, name: str) -> list[TaskRecord]:
        return list(self._defs.tasks.get((tenant, name), []))

    async def archive_task(self, tenant: str, name: str) -> bool:
        versions = self._defs.tasks.get((tenant, name))
        if not versions:
            return False
        versions[:] = [dataclasses.replace(v, archived=True) for v in versions]
        return True

    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        if schedule.id in self._defs.schedules:
            raise Conflict(f"schedule id {schedule.id!r} already exists")
        self._defs.schedules[schedule.id] = schedule
        self._defs.fires[schedule.id] = {}
        data = {"task": schedule.task, "paused": schedule.spec.paused}
        log = self._event_log
        log.append(schedule.tenant, schedule.owner, "schedule.created", schedule.id, data)
        return schedule

    async def get_schedule(self, schedule_id: str, tenant: str | None) -> ScheduleRecord | None:
        found = self._defs.schedules.get(schedule_id)
        if found is None or (tenant is not None and found.tenant != tenant):
            return None
        return found

    async def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        found = [s for s in self._defs.schedules.values() if tenant in (None, s.tenant)]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def update_schedule(
        self, schedule_id: str, change: ScheduleChange
    ) -> ScheduleRecord | None:
        found = self._defs.schedules.get(schedule_id)
        if found is None:
            return None
        updated = dataclasses.replace(
            found,
            spec=change.spec,
            task_version=change.task_version,
            params=_copy_json(change.params),
            next_fire_at=change.next_fire_at,
            handled_until=utc(change.handled_until),
        )
        self._defs.schedules[schedule_id] = updated
        changed = (found.spec, found.task_version, found.params) != (
            updated.spec,
            updated.task_version,
            updated.params,
        )
        if changed:
            kind = "schedule.updated"
            if updated.spec.paused != found.spec.paused:
                kind = "schedule.paused" if updated.spec.paused else "schedule.resumed"
            data = {"task": found.task}
            self._event_log.append(found.tenant, found.owner, kind, schedule_id, data)
        return updated

    async def delete_schedule(self, schedule_id: str) -> bool:
        self._defs.fires.pop(schedule_id, None)
        found = self._defs.schedules.pop(schedule_id, None)
        if found is not None:
            data = {"task": found.task}
            self._event_log.append(found.tenant, found.owner, "schedule.deleted", schedule_id, data)
        return found is not None

    def _fired(self, schedule: ScheduleRecord, fire: FireRecord) -> None:
        data = {"fire_key": fire.fire_key, "outcome": fire.outcome, "run_id": fire.run_id}
        self._event_log.append(schedule.tenant, schedule.owner, "schedule.fired", schedule.id, data)

    async def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        due = [
            s
            for s in self._defs.schedules.values()
            if s.next_fire_at is not None and s.next_fire_at <= now
        ]
        return sorted(due, key=lambda s: (s.next_fire_at or now, s.id))[:limit]

    async def buffered_schedules(self, limit: int = 100) -> list[ScheduleRecord]:
        found = [s for s in self._defs.schedules.values() if s.buffered_fire is not None]
        return sorted(found, key=lambda s: s.id)[:limit]

    async def next_fire_at(self) -> datetime | None:
        times = [s.next_fire_at for s in self._defs.schedules.values() if s.next_fire_at]
        return min(times, default=None)

    async def record_fires(self, batch: FireBatch) -> list[Run] | None:
        sid = batch.schedule_id
        found = self._defs.schedules.get(sid)
        if found is None:
            return None
        if not batch.manual:
            if found.handled_until != utc(batch.expected_handled_until):
                return None
            found = dataclasses.replace(
                found,
                handled_until=utc(batch.handled_until),
                next_fire_at=batch.next_fire_at,
                missed_count=found.missed_count + batch.missed,
            )
        fires = self._defs.fires[sid]
        runs: list[Run] = []
        for fire in batch.fires:
            if fire.fire_key in fires:
                continue
            run_id = None if fire.run is None else fire.run.id
            if fire.run is not None:
                if fire.run.id in self._runs:
                    raise Conflict(f"run id {fire.run.id!r} already exists")
                runs.append((await self.enqueue(fire.run))[0])
            fires[fire.fire_key] = FireRecord(
                schedule_id=sid,
                fire_key=fire.fire_key,
                fire_at=utc(fire.fire_at),
                outcome=fire.outcome,
                run_id=run_id,
                created_at=utc(batch.now),
                message=fire.message,
            )
            self._fired(found, fires[fire.fire_key])
            found = dataclasses.replace(
                found,
                last_fire_at=utc(fire.fire_at),
                last_outcome=fire.outcome,
                last_run_id=run_id or found.last_run_id,
                skipped_count=found.skipped_count + int(fire.outcome in SKIPPED_OUTCOMES),
                buffered_fire=fire.fire_key if fire.outcome == "buffered" else found.buffered_fire,
            )
        self._defs.schedules[sid] = found
        return runs

    async def start_buffered(self, schedule_id: str, fire_key: str, new: NewRun) -> Run | None:
        found = self._defs.schedules.get(schedule_id)
        if found is None or found.buffered_fire != fire_key:
            return None
        self._defs.schedules[schedule_id] = dataclasses.replace(
            found, buffered_fire=None, last_run_id=new.id, last_outcome="started"
        )
        fires = self._defs.fires[schedule_id]
        fires[fire_key] = dataclasses.replace(fires[fire_key], outcome="started", run_id=new.id)
        run = (await self.enqueue(new))[0]
        self._fired(found, fires[fire_key])
        return run

    async def schedule_fires(self, schedule_id: str, limit: int = 50) -> list[FireRecord]:
        found = sorted(
            self._defs.fires.get(schedule_id, {}).values(),
            key=lambda f: (f.fire_at, f.created_at),
            reverse=True,
        )
        return found[:limit]


@dataclass
class _Definitions:
    tasks: dict[tuple[str, str], list[TaskRecord]] = dataclasses.field(default_factory=dict)
    schedules: dict[str, ScheduleRecord] = dataclasses.field(default_factory=dict)
    fires: dict[str, dict[str, FireRecord]] = dataclasses.field(default_factory=dict)


def _below(cursor: RunCursor, run: Run, windowed: bool) -> bool:
    """Whether ``run`` comes after ``cursor`` in its list (see ``Store.list_runs``)."""
    if windowed and cursor.created_at_us is not None:
        return (to_us(run.created_at), run.seq) < (cursor.created_at_us, cursor.seq)
    return run.seq < cursor.seq
