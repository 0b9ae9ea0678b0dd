"""``SqliteStore``: the store contract on one SQLite file (the embedded default).

Atomicity: every operation is one transaction on the store's single connection (see
``_sqlite_db``); writes use ``BEGIN IMMEDIATE``, so the write lock is taken before the first read
and no other process can interleave between a check and the write that depends on it (the
fencing checks, the idempotency lookup, the claim's SELECT). Several processes may open the same
file: the claim is one ``UPDATE … WHERE seq IN (SELECT … LIMIT n) RETURNING`` under that lock,
so a run is never handed to two workers. Reads run in a deferred transaction: a consistent
snapshot that never blocks writers (WAL).

Durability: WAL with ``synchronous=NORMAL``: a process crash loses nothing committed, an OS
crash may lose the last transactions, except ``enqueue``, which commits with ``synchronous=FULL``
because its answer (the 202) promises the run is durably stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

from mcpexec.errors import BatchRefused, Conflict, McpexecError
from mcpexec.models import (
    Artifact,
    Attempt,
    Page,
    Progress,
    Run,
    RunFilter,
    RunStatus,
    Stream,
)
from mcpexec.store import _sqlite_tasks as tasks_sql
from mcpexec.store._run_list import list_runs_sql, page_of
from mcpexec.store._shared import CANCELLED_MESSAGE, WorkSignal, decide_finish, from_us, to_us
from mcpexec.store._sqlite_db import Database, load_queries
from mcpexec.store._sqlite_events import SqliteEvents
from mcpexec.store._sqlite_hooks import SqliteHooks
from mcpexec.store._sqlite_rows import (
    attempt_of,
    claim_of,
    finish_attempt_args,
    finish_run_args,
    hours_of,
    json_or_none,
    run_of,
    us_or_none,
    worker_args,
    worker_of,
)
from mcpexec.store._sqlite_tasks import run_args
from mcpexec.store._sqlite_tenancy import SqliteTenancy, check_queue, pick_claims, record_submit
from mcpexec.store._sqlite_workflows import SqliteWorkflows
from mcpexec.store.base import (
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
)
from mcpexec.tasks import TaskDefinition

Q = load_queries()


def _append(
    conn: sqlite3.Connection, run_id: str, attempt: int, stream: Stream, data: bytes
) -> int:
    """Append ``data`` to the stream's log (the caller holds the attempt); its offset."""
    args = {"run_id": run_id, "stream": stream.value, "attempt": attempt, "data": data}
    end = conn.execute(Q["log_end"], args).fetchone()
    offset: int = 0 if end is None else end[0]
    if data:  # an empty chunk would collide with the next one's offset
        conn.execute(Q["insert_log"], {**args, "byte_offset": offset})
        conn.execute(Q["add_usage"], {"run_id": run_id, "bytes": len(data)})
    return offset


def _enqueue_in(conn: sqlite3.Connection, new: NewRun) -> tuple[Run, bool]:
    """One run's enqueue inside the caller's transaction (``Store.enqueue``)."""
    args = run_args(new)
    if new.idempotency_key is not None:
        row = conn.execute(Q["run_by_key"], args).fetchone()
        if row is not None:
            return run_of(row), False
    check_queue(conn, Q, new)
    try:
        row = conn.execute(Q["insert_run"], args).fetchone()
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"run id {new.id!r} already exists") from exc
    record_submit(conn, Q, new)
    return run_of(row), True


def _holds(conn: sqlite3.Connection, run_id: str, attempt: int, worker_id: str) -> bool:
    args = {"run_id": run_id, "attempt": attempt, "worker_id": worker_id}
    return conn.execute(Q["holds"], args).fetchone() is not None


class SqliteStore(SqliteTenancy, SqliteWorkflows, SqliteEvents, SqliteHooks, Store):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = Database(self.path)
        self._q = Q
        self._work = WorkSignal()

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def wait_for_work(self, timeout: float) -> bool:
        # SQLite cannot tell another process: only this object's writes wake (the class flag
        # wakes_across_processes stays False, so workers elsewhere keep polling).
        return await self._work.wait(timeout)

    # -- runs --------------------------------------------------------------------------------
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        run, created = await self._db.write(lambda conn: _enqueue_in(conn, new), durable=True)
        if created:
            self._work.notify()
        return run, created

    async def enqueue_many(
        self,
        news: Sequence[NewRun],
        *,
        all_or_nothing: bool = False,
        check_replay: ReplayCheck | None = None,
    ) -> list[Enqueued]:
        def tx(conn: sqlite3.Connection) -> list[Enqueued]:
            results: list[Enqueued] = []
            for new in news:
                # Each item in its own savepoint (inside the group commit's): a refused item
                # leaves nothing behind, the others stay.
                conn.execute("SAVEPOINT item")
                try:
                    run, created = _enqueue_in(conn, new)
                    refused = None if created or check_replay is None else check_replay(new, run)
                    if refused is not None:
                        raise refused
                    results.append((run, created))
                except McpexecError as exc:
                    conn.execute("ROLLBACK TO item")
                    results.append(exc)
                conn.execute("RELEASE item")
            failures = [(i, r) for i, r in enumerate(results) if isinstance(r, McpexecError)]
            if all_or_nothing and failures:
                raise BatchRefused(failures)  # the group commit rolls the whole batch back
            return results

        if not news:
            return []
        results = await self._db.write(tx, durable=True)
        if any(isinstance(r, tuple) and r[1] for r in results):
            self._work.notify()
        return results

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["run_by_id"], {"run_id": run_id, "tenant": tenant}).fetchone()
            return None if row is None else run_of(row)

        return await self._db.read(tx)

    async def list_runs(self, filter: RunFilter, limit: int, cursor: RunCursor | None) -> Page:
        if limit <= 0:
            return Page(runs=[])
        sql, args = list_runs_sql("sqlite", filter, limit, cursor)

        def tx(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(sql, args).fetchall()
            return page_of(filter, limit, rows)

        return await self._db.read(tx)

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_expires_at: datetime,
        limits: ClaimLimits | None = None,
    ) -> list[Claim]:
        now_us = to_us(now)
        args = {"worker_id": worker_id, "now": now_us, "lease_expires_at": to_us(lease_expires_at)}

        def tx(conn: sqlite3.Connection) -> list[Claim]:
            seqs = pick_claims(conn, Q, limit, now_us, limits)
            if not seqs:
                return []
            rows = conn.execute(Q["claim"], {**args, "seqs": json.dumps(seqs)}).fetchall()
            # RETURNING gives no order; restore the fair pick's order for the caller.
            order = {seq: i for i, seq in enumerate(seqs)}
            rows.sort(key=lambda r: order[r["seq"]])
            conn.executemany(
                Q["insert_attempt"],
                [
                    {"run_id": r["id"], "number": r["attempts"], "worker_id": worker_id, **args}
                    for r in rows
                ],
            )
            return [claim_of(r) for r in rows]

        if limit <= 0:
            return []
        return await self._db.write(tx)

    async def next_available_at(
        self, worker_labels: Collection[str] = frozenset()
    ) -> datetime | None:
        args = {"have": json.dumps(sorted(worker_labels))}

        def tx(conn: sqlite3.Connection) -> datetime | None:
            value = conn.execute(Q["next_available_at"], args).fetchone()[0]
            return None if value is None else from_us(value)

        return await self._db.read(tx)

    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        lease = to_us(lease_expires_at)

        def tx(conn: sqlite3.Connection) -> HeartbeatReply:
            cancel, lost = set(), set()
            for run_id, attempt in held:
                args = {
                    "run_id": run_id,
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "lease_expires_at": lease,
                }
                row = conn.execute(Q["renew_lease"], args).fetchone()
                if row is None:
                    lost.add(run_id)
                elif row["cancel_requested"]:
                    cancel.add(run_id)
            conn.execute(
                Q["worker_heartbeat"],
                {"worker_id": worker_id, "now": to_us(now), "running": len(held) - len(lost)},
            )
            return HeartbeatReply(cancel=frozenset(cancel), lost=frozenset(lost))

        return await self._db.write(tx)

    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        args = {
            "run_id": run_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "progress": progress.model_dump_json(),
        }
        return await self._db.write(
            lambda conn: conn.execute(Q["record_progress"], args).rowcount == 1, grouped=True
        )

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
        fence = {
            "run_id": run_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "lease_expired_before": us_or_none(lease_expired_before),
        }
        result = json_or_none(outcome.result)  # refuse a non-JSON result before touching anything
        now_us = to_us(now)

        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["held_run"], fence).fetchone()
            if row is None:
                return None
            for stream, data in outcome.log_tail:
                _append(conn, run_id, attempt, stream, data)
            decision = decide_finish(
                outcome,
                bool(row["cancel_requested"]),
                retry_at is not None,
                bool(row["has_artifacts"]),
            )
            conn.execute(
                Q["finish_attempt"], finish_attempt_args(run_id, attempt, outcome, decision, now_us)
            )
            updated = conn.execute(
                Q["finish_run"],
                finish_run_args(run_id, outcome, decision, result, now_us, retry_at),
            ).fetchone()
            return run_of(updated)

        finished = await self._db.write(tx, grouped=True)
        if finished is not None and finished.status == RunStatus.PENDING:
            self._work.notify()
        return finished

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        args = {"now": to_us(now), "limit": limit}
        return await self._db.read(
            lambda conn: [claim_of(r) for r in conn.execute(Q["expired_leases"], args)]
        )

    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        args = {"worker_id": worker_id, "now": to_us(now)}

        def tx(conn: sqlite3.Connection) -> int:
            count = conn.execute(Q["expire_worker_leases"], args).rowcount
            conn.execute(Q["delete_worker"], args)
            return count

        return await self._db.write(tx)

    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        args = {"run_id": run_id, "tenant": tenant, "now": to_us(now), "message": CANCELLED_MESSAGE}

        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["run_by_id"], args).fetchone()
            if row is None:
                return None
            if row["status"] == RunStatus.PENDING:
                row = conn.execute(Q["cancel_pending"], args).fetchone()
            elif row["status"] == RunStatus.RUNNING and not row["cancel_requested"]:
                row = conn.execute(Q["cancel_running"], args).fetchone()
            return run_of(row)

        return await self._db.write(tx)

    async def attempts(self, run_id: str) -> list[Attempt]:
        args = {"run_id": run_id}
        return await self._db.read(
            lambda conn: [attempt_of(r) for r in conn.execute(Q["attempts_of_run"], args)]
        )

    # -- logs and artifacts --------------------------------------------------------------------
    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        def tx(conn: sqlite3.Connection) -> int | None:
            if not _holds(conn, run_id, attempt, worker_id):
                return None
            return _append(conn, run_id, attempt, stream, data)

        return await self._db.write(tx, grouped=True)

    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        offset, limit = max(offset, 0), max(limit, 0)
        args = {"run_id": run_id, "stream": stream.value, "start": offset, "end": offset + limit}

        def tx(conn: sqlite3.Connection) -> tuple[bytes, int]:
            parts = []
            for row in conn.execute(Q["read_log"], args):
                start = row["byte_offset"]
                parts.append(row["data"][max(offset - start, 0) : offset + limit - start])
            data = b"".join(parts)
            return data, offset + len(data)

        if limit == 0:
            return b"", offset
        return await self._db.read(tx)

    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        args = {
            "run_id": artifact.run_id,
            "name": artifact.name,
            "attempt": artifact.attempt,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "created_at": to_us(artifact.created_at),
        }

        def tx(conn: sqlite3.Connection) -> bool:
            if not _holds(conn, artifact.run_id, artifact.attempt, worker_id):
                return False
            replaced = conn.execute(Q["artifact_size"], args).fetchone()
            conn.execute(Q["upsert_artifact"], args)
            grown = artifact.size - (0 if replaced is None else replaced[0])
            conn.execute(Q["add_usage"], {"run_id": artifact.run_id, "bytes": grown})
            return True

        return await self._db.write(tx)

    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        def tx(conn: sqlite3.Connection) -> list[Artifact]:
            return [
                Artifact(
                    run_id=r["run_id"],
                    name=r["name"],
                    size=r["size"],
                    sha256=r["sha256"],
                    attempt=r["attempt"],
                    created_at=from_us(r["created_at"]),
                )
                for r in conn.execute(Q["list_artifacts"], {"run_id": run_id})
            ]

        return await self._db.read(tx)

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        args = worker_args(info)
        await self._db.write(lambda conn: conn.execute(Q["upsert_worker"], args))

    async def remove_worker(self, worker_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(Q["delete_worker"], {"worker_id": worker_id})
        )

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._db.read(
            lambda conn: [worker_of(r) for r in conn.execute(Q["list_workers"])]
        )

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        args = {"before": to_us(before), "limit": limit}

        def tx(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(Q["purgeable"], args).fetchall()
            freed: dict[str, int] = {}
            for row in rows:
                size = conn.execute(Q["run_bytes"], {"run_id": row["id"]}).fetchone()[0]
                freed[row["tenant"]] = freed.get(row["tenant"], 0) + size
            conn.executemany(Q["delete_run"], [{"run_id": r["id"]} for r in rows])
            conn.executemany(
                Q["subtract_usage"], [{"tenant": t, "bytes": b} for t, b in freed.items()]
            )
            return [r["id"] for r in rows]

        return await self._db.write(tx)

    async def storage_used(self, tenant: str | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            used: int = conn.execute(Q["storage_used"], {"tenant": tenant}).fetchone()[0]
            return used

        return await self._db.read(tx)

    async def stats(self, tenant: str | None = None) -> Stats:
        def tx(conn: sqlite3.Connection) -> Stats:
            counts = dict.fromkeys((s.value for s in RunStatus), 0)
            for row in conn.execute(Q["stats"], {"tenant": tenant}):
                counts[row["status"]] = row["n"]
            return Stats(by_status=counts)

        return await self._db.read(tx)

    async def run_history(self, since: datetime, tenant: str | None = None) -> list[HourStats]:
        args = {"since": to_us(since), "tenant": tenant}

        def tx(conn: sqlite3.Connection) -> list[HourStats]:
            return hours_of(conn.execute(Q["run_history"], args))

        return await self._db.read(tx)

    async def prune_history(self, before: datetime, limit: int = 5000) -> int:
        args = {"before": to_us(before), "limit": limit}
        return await self._db.write(lambda conn: conn.execute(Q["prune_history"], args).rowcount)

    # == tasks and schedules (issue 11; bodies in _sqlite_tasks) ================================
    async def define_task(
        self, tenant: str, owner: str, task: TaskDefinition, now: datetime
    ) -> tuple[TaskRecord, bool]:
        args = {"tenant": tenant, "name": task.name, "owner": owner, "created_at": to_us(now)}
        return await self._db.write(lambda conn: tasks_sql.define_task(conn, Q, args, task))

    async def get_task(self, tenant: str, name: str, version: int | None) -> TaskRecord | None:
        args = {"tenant": tenant, "name": name, "version": version}
        query = Q["latest_task"] if version is None else Q["task_version"]

        def tx(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute(query, args).fetchone()
            return None if row is None else tasks_sql.task_of(row)

        return await self._db.read(tx)

    async def list_tasks(self, tenant: str | None, archived: bool = False) -> list[TaskRecord]:
        args = {"tenant": tenant, "archived": archived}
        return await self._db.read(
            lambda conn: [tasks_sql.task_of(r) for r in conn.execute(Q["list_tasks"], args)]
        )

    async def task_versions(self, tenant: str, name: str) -> list[TaskRecord]:
        args = {"tenant": tenant, "name": name}
        return await self._db.read(
            lambda conn: [tasks_sql.task_of(r) for r in conn.execute(Q["task_versions"], args)]
        )

    async def archive_task(self, tenant: str, name: str) -> bool:
        args = {"tenant": tenant, "name": name}
        return await self._db.write(lambda conn: conn.execute(Q["archive_task"], args).rowcount > 0)

    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        args = tasks_sql.schedule_args(schedule)

        def tx(conn: sqlite3.Connection) -> ScheduleRecord:
            try:
                return tasks_sql.schedule_of(conn.execute(Q["insert_schedule"], args).fetchone())
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"schedule id {schedule.id!r} already exists") from exc

        return await self._db.write(tx)

    async def get_schedule(self, schedule_id: str, tenant: str | None) -> ScheduleRecord | None:
        args = {"id": schedule_id, "tenant": tenant}

        def tx(conn: sqlite3.Connection) -> ScheduleRecord | None:
            row = conn.execute(Q["schedule_by_id"], args).fetchone()
            return None if row is None else tasks_sql.schedule_of(row)

        return await self._db.read(tx)

    async def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        rows = Q["list_schedules"]
        return await self._db.read(
            lambda conn: [tasks_sql.schedule_of(r) for r in conn.execute(rows, {"tenant": tenant})]
        )

    async def update_schedule(
        self, schedule_id: str, change: ScheduleChange
    ) -> ScheduleRecord | None:
        args = tasks_sql.schedule_change_args(schedule_id, change)

        def tx(conn: sqlite3.Connection) -> ScheduleRecord | None:
            row = conn.execute(Q["update_schedule"], args).fetchone()
            return None if row is None else tasks_sql.schedule_of(row)

        return await self._db.write(tx)

    async def delete_schedule(self, schedule_id: str) -> bool:
        args = {"id": schedule_id}
        return await self._db.write(
            lambda conn: conn.execute(Q["delete_schedule"], args).rowcount > 0
        )

    async def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        args = {"now": to_us(now), "limit": limit}
        return await self._db.read(
            lambda conn: [tasks_sql.schedule_of(r) for r in conn.execute(Q["due_schedules"], args)]
        )

    async def buffered_schedules(self, limit: int = 100) -> list[ScheduleRecord]:
        query, args = Q["buffered_schedules"], {"limit": limit}
        return await self._db.read(
            lambda conn: [tasks_sql.schedule_of(r) for r in conn.execute(query, args)]
        )

    async def next_fire_at(self) -> datetime | None:
        def tx(conn: sqlite3.Connection) -> datetime | None:
            value = conn.execute(Q["min_next_fire"]).fetchone()[0]
            return None if value is None else from_us(value)

        return await self._db.read(tx)

    async def record_fires(self, batch: FireBatch) -> list[Run] | None:
        durable = any(f.run is not None for f in batch.fires)  # a fire's run is a submit
        runs = await self._db.write(
            lambda conn: tasks_sql.record_fires(conn, Q, batch), durable=durable
        )
        if runs:
            self._work.notify()
        return runs

    async def start_buffered(self, schedule_id: str, fire_key: str, new: NewRun) -> Run | None:
        run = await self._db.write(
            lambda conn: tasks_sql.start_buffered(conn, Q, schedule_id, fire_key, new),
            durable=True,
        )
        if run is not None:
            self._work.notify()
        return run

    async def schedule_fires(self, schedule_id: str, limit: int = 50) -> list[FireRecord]:
        args = {"schedule_id": schedule_id, "limit": limit}
        return await self._db.read(
            lambda conn: [tasks_sql.fire_of(r) for r in conn.execute(Q["schedule_fires"], args)]
        )
