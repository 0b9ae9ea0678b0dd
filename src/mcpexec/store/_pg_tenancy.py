"""The PostgreSQL store's tenancy (issue 10) and tasks and schedules (issue 11), and the small
helpers every ``PostgresStore`` transaction uses.

The check-and-write steps run inside the transaction ``PostgresStore`` opened: the enqueue's
queue limits under an advisory lock per tenant (taken only when a limit applies), a define's
"latest version" read under an advisory lock per task name, the scheduler's step fenced by its
cursor (an ``UPDATE … WHERE handled_until = expected``: a second process waits for the row
lock, then updates nothing) and each fire by its primary key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg.errors
from psycopg.rows import DictRow

from mcpexec.errors import Conflict
from mcpexec.models import Run
from mcpexec.store._pg_db import Conn, Database
from mcpexec.store._shared import EPOCH, from_us, to_us
from mcpexec.store._sqlite_rows import run_of, us_or_none
from mcpexec.store._sqlite_tasks import (
    fire_of,
    run_args,
    schedule_args,
    schedule_change_args,
    schedule_of,
    task_of,
)
from mcpexec.store._sqlite_tenancy import (
    audit_args,
    audit_of,
    queue_full,
    submit_entry,
    tenant_args,
    tenant_of,
    token_args,
    token_of,
)
from mcpexec.store.base import (
    SKIPPED_OUTCOMES,
    AuditEntry,
    FireBatch,
    FireRecord,
    NewRun,
    ScheduleChange,
    ScheduleRecord,
    TaskRecord,
    TenantRecord,
    TokenRecord,
)
from mcpexec.tasks import TaskDefinition, canonical_content, content_hash, next_version

QUEUE_FULL_HINT = "mcpexec.queue_full"  # mcpexec_enqueue's refusal (migration 0016)


async def fetch_one(conn: Conn, query: str, args: Mapping[str, Any]) -> DictRow | None:
    return await (await conn.execute(query, args)).fetchone()


async def fetch_all(conn: Conn, query: str, args: Mapping[str, Any]) -> list[DictRow]:
    return await (await conn.execute(query, args)).fetchall()


async def enqueue_run(
    conn: Conn, q: Mapping[str, str], new: NewRun, origin: str, retried: bool = False
) -> tuple[Run, bool]:
    """One submitted run, under the queue limits, by the server-side ``mcpexec_enqueue``
    (migration 0016: idempotency key, limits, the run, its audit entry and the NOTIFY in one
    statement): ``(run, created)`` as ``Store.enqueue``; raises ``QuotaExceeded`` when a queue
    is full (the statement changed nothing), ``Conflict`` for a duplicate id. In autocommit
    (``Database.statement``) the statement is the whole transaction; a batch enqueue may call
    it once per item inside one transaction instead (a refusal then aborts that transaction).
    ``retried``: a retry after a lost connection (the run, if the first try committed, is
    answered as created)."""
    entry = audit_args(submit_entry(new))
    args = {
        **run_args(new),
        "audit_at": entry["at"],
        "actor": entry["actor"],
        "token_id": entry["token_id"],
        "detail": entry["detail"],
        "origin": origin,
        "default_max_queued": new.default_max_queued,
        "global_max_queued": new.global_max_queued,
        "retried": retried,
    }
    try:
        row = await fetch_one(conn, q["enqueue"], args)
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"run id {new.id!r} already exists") from exc
    except psycopg.errors.RaiseException as exc:
        if exc.diag.message_hint != QUEUE_FULL_HINT or exc.diag.message_detail is None:
            raise
        full = json.loads(exc.diag.message_detail)
        raise queue_full(full["tenant"], full["max_queued"], full["queued"]) from None
    assert row is not None
    return run_of(row), row["id"] == new.id


async def insert_run(conn: Conn, q: Mapping[str, str], new: NewRun) -> Run:
    """Insert a scheduled run (no idempotency key); a duplicate id raises ``Conflict``."""
    try:
        row = await fetch_one(conn, q["insert_run"], run_args(new))
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"run id {new.id!r} already exists") from exc
    if row is None:
        raise Conflict(f"run {new.id!r}: idempotency key {new.idempotency_key!r} is taken")
    return run_of(row)


class PostgresTenancy:
    """The tenancy, task and schedule methods of ``PostgresStore``."""

    _db: Database
    _q: Mapping[str, str]

    async def _execute(self, query: str, args: Mapping[str, Any]) -> int:
        async def tx(conn: Conn) -> int:
            return (await conn.execute(query, args)).rowcount

        return await self._db.run(tx)

    async def _one(self, query: str, args: Mapping[str, Any]) -> DictRow | None:
        async def tx(conn: Conn) -> DictRow | None:
            return await fetch_one(conn, query, args)

        return await self._db.run(tx)

    async def _read_one(self, query: str, args: Mapping[str, Any]) -> DictRow | None:
        """``_one`` for a read-only statement (``Database.read``: no BEGIN/COMMIT)."""

        async def read(conn: Conn) -> DictRow | None:
            return await fetch_one(conn, query, args)

        return await self._db.read(read)

    async def _all(self, query: str, args: Mapping[str, Any]) -> list[DictRow]:
        async def tx(conn: Conn) -> list[DictRow]:
            return await fetch_all(conn, query, args)

        return await self._db.run(tx)

    async def _wake_others(self, conn: Conn) -> None:
        await conn.execute(self._q["notify_work"], {"origin": self._db.origin})

    # -- tokens, tenants, audit ------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None:
        args = token_args(token)
        q = self._q

        async def tx(conn: Conn) -> None:
            await conn.execute(q["ensure_tenant"], args)
            await conn.execute(q["ensure_principal"], args)
            try:
                await conn.execute(q["insert_token"], args)
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict("a token with this id or hash already exists") from exc

        await self._db.run(tx)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        row = await self._read_one(self._q["token_by_hash"], {"token_hash": token_hash})
        return None if row is None else token_of(row)

    async def list_tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        return [token_of(r) for r in await self._all(self._q["list_tokens"], {"tenant": tenant})]

    async def revoke_token(self, token_id: str, tenant: str | None = None) -> TokenRecord | None:
        args = {"token_id": token_id, "tenant": tenant}
        if await self._one(self._q["revoke_token"], args) is None:
            return None
        return next((t for t in await self.list_tokens(tenant) if t.id == token_id), None)

    async def touch_token(self, token_id: str, now: datetime) -> None:
        await self._execute(self._q["touch_token"], {"token_id": token_id, "now": to_us(now)})

    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        q = self._q
        args = tenant_args(tenant)

        async def tx(conn: Conn) -> TenantRecord:
            try:
                row = await fetch_one(conn, q["insert_tenant"], args)
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"tenant {tenant.id!r} already exists", tenant=tenant.id) from exc
            assert row is not None
            return tenant_of(row)

        return await self._db.run(tx)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        row = await self._read_one(self._q["get_tenant"], {"id": tenant_id})
        return None if row is None else tenant_of(row)

    async def list_tenants(self) -> list[TenantRecord]:
        return [tenant_of(r) for r in await self._all(self._q["list_tenants"], {})]

    async def update_tenant(
        self,
        tenant_id: str,
        max_concurrent: int | None,
        max_queued: int | None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> TenantRecord | None:
        args = tenant_args(
            TenantRecord(
                tenant_id,
                EPOCH,
                max_concurrent,
                max_queued,
                max_runtime_s,
                max_limits or {},
                default_limits or {},
            )
        )
        row = await self._one(self._q["update_tenant"], args)
        return None if row is None else tenant_of(row)

    async def tenant_load(self, tenant: str) -> tuple[int, int]:
        row = await self._one(self._q["tenant_load"], {"tenant": tenant})
        assert row is not None
        return int(row["running"]), int(row["pending"])

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._execute(self._q["insert_audit"], audit_args(entry))

    async def list_audit(
        self, tenant: str | None, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        args = {"tenant": tenant, "limit": limit, "before": 2**63 - 1 if before is None else before}
        return [audit_of(r) for r in await self._all(self._q["list_audit"], args)]

    # -- tasks -----------------------------------------------------------------------------------
    async def define_task(
        self, tenant: str, owner: str, task: TaskDefinition, now: datetime
    ) -> tuple[TaskRecord, bool]:
        q = self._q
        args = {"tenant": tenant, "name": task.name, "owner": owner, "created_at": to_us(now)}

        async def tx(conn: Conn) -> tuple[TaskRecord, bool]:
            await conn.execute(q["lock_task"], args)
            latest = await fetch_one(conn, q["latest_task"], args)
            version, created = next_version(
                None if latest is None else (latest["version"], latest["content_hash"]), task
            )
            await conn.execute(q["unarchive_task"], args)
            if not created:
                assert latest is not None
                return dataclasses.replace(task_of(latest), archived=False), False
            definition = json.dumps({"name": task.name, **canonical_content(task)}, sort_keys=True)
            row = await fetch_one(
                conn,
                q["insert_task"],
                {
                    **args,
                    "version": version,
                    "content_hash": content_hash(task),
                    "definition": definition,
                },
            )
            assert row is not None
            return task_of(row), True

        return await self._db.run(tx)

    async def get_task(self, tenant: str, name: str, version: int | None) -> TaskRecord | None:
        query = self._q["latest_task"] if version is None else self._q["task_version"]
        row = await self._one(query, {"tenant": tenant, "name": name, "version": version})
        return None if row is None else task_of(row)

    async def list_tasks(self, tenant: str | None, archived: bool = False) -> list[TaskRecord]:
        found = await self._all(self._q["list_tasks"], {"tenant": tenant, "archived": archived})
        return [task_of(r) for r in found]

    async def task_versions(self, tenant: str, name: str) -> list[TaskRecord]:
        found = await self._all(self._q["task_versions"], {"tenant": tenant, "name": name})
        return [task_of(r) for r in found]

    async def archive_task(self, tenant: str, name: str) -> bool:
        return await self._execute(self._q["archive_task"], {"tenant": tenant, "name": name}) > 0

    # -- schedules -------------------------------------------------------------------------------
    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        q = self._q

        async def tx(conn: Conn) -> ScheduleRecord:
            try:
                row = await fetch_one(conn, q["insert_schedule"], schedule_args(schedule))
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"schedule id {schedule.id!r} already exists") from exc
            assert row is not None
            return schedule_of(row)

        return await self._db.run(tx)

    async def get_schedule(self, schedule_id: str, tenant: str | None) -> ScheduleRecord | None:
        row = await self._one(self._q["schedule_by_id"], {"id": schedule_id, "tenant": tenant})
        return None if row is None else schedule_of(row)

    async def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        return [
            schedule_of(r) for r in await self._all(self._q["list_schedules"], {"tenant": tenant})
        ]

    async def update_schedule(
        self, schedule_id: str, change: ScheduleChange
    ) -> ScheduleRecord | None:
        args = schedule_change_args(schedule_id, change)
        row = await self._one(self._q["update_schedule"], args)
        return None if row is None else schedule_of(row)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._execute(self._q["delete_schedule"], {"id": schedule_id}) > 0

    async def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        found = await self._all(self._q["due_schedules"], {"now": to_us(now), "limit": limit})
        return [schedule_of(r) for r in found]

    async def buffered_schedules(self, limit: int = 100) -> list[ScheduleRecord]:
        found = await self._all(self._q["buffered_schedules"], {"limit": limit})
        return [schedule_of(r) for r in found]

    async def next_fire_at(self) -> datetime | None:
        row = await self._one(self._q["min_next_fire"], {})
        return None if row is None or row["at"] is None else from_us(row["at"])

    async def record_fires(self, batch: FireBatch) -> list[Run] | None:
        q = self._q
        sid = batch.schedule_id

        async def tx(conn: Conn) -> list[Run] | None:
            if batch.manual:
                if await fetch_one(conn, q["schedule_exists"], {"id": sid}) is None:
                    return None
            else:
                moved = await conn.execute(
                    q["advance_schedule"],
                    {
                        "id": sid,
                        "expected": to_us(batch.expected_handled_until),
                        "handled_until": to_us(batch.handled_until),
                        "next_fire_at": us_or_none(batch.next_fire_at),
                        "missed": batch.missed,
                    },
                )
                if moved.rowcount != 1:
                    return None  # another process handled this step (or the schedule is gone)
            runs: list[Run] = []
            for fire in batch.fires:
                fire_args = {
                    "schedule_id": sid,
                    "fire_key": fire.fire_key,
                    "fire_at": to_us(fire.fire_at),
                    "outcome": fire.outcome,
                    "run_id": None if fire.run is None else fire.run.id,
                    "message": fire.message,
                    "created_at": to_us(batch.now),
                }
                if (await conn.execute(q["insert_fire"], fire_args)).rowcount != 1:
                    continue  # this fire happened already: its run exists
                if fire.run is not None:
                    runs.append(await insert_run(conn, q, fire.run))
                await conn.execute(
                    q["note_fire"],
                    {
                        **fire_args,
                        "skipped": int(fire.outcome in SKIPPED_OUTCOMES),
                        "buffer": fire.outcome == "buffered",
                    },
                )
            if runs:
                await self._wake_others(conn)
            return runs

        durable = any(f.run is not None for f in batch.fires)
        runs = await self._db.run(tx, durable=durable)
        if runs:
            self._db.work.notify()
        return runs

    async def start_buffered(self, schedule_id: str, fire_key: str, new: NewRun) -> Run | None:
        q = self._q
        args = {"schedule_id": schedule_id, "fire_key": fire_key, "run_id": new.id}

        async def tx(conn: Conn) -> Run | None:
            if (await conn.execute(q["take_buffered"], args)).rowcount != 1:
                return None
            await conn.execute(q["start_buffered_fire"], args)
            run = await insert_run(conn, q, new)
            await self._wake_others(conn)
            return run

        run = await self._db.run(tx, durable=True)
        if run is not None:
            self._db.work.notify()
        return run

    async def schedule_fires(self, schedule_id: str, limit: int = 50) -> list[FireRecord]:
        args = {"schedule_id": schedule_id, "limit": limit}
        return [fire_of(r) for r in await self._all(self._q["schedule_fires"], args)]
