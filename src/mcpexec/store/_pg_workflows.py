"""The PostgreSQL store's workflows (issue 16): definitions, workflow runs and their events.

The same tables as the SQLite dialect (its row decoders serve both). What SQLite's single write
lock gives, PostgreSQL gets from an advisory lock per workflow name (two defines take turns
over the "latest version" read) and from the revision in the update's ``WHERE`` (a workflow
run's state is replaced by compare-and-set, so two engines cannot both advance it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import psycopg.errors

from mcpexec.errors import Conflict
from mcpexec.store._pg_db import Conn, Database
from mcpexec.store._pg_tenancy import fetch_all, fetch_one
from mcpexec.store._sqlite_workflows import (
    define_args,
    event_of,
    event_rows,
    run_args,
    update_args,
    workflow_of,
    workflow_run_of,
)
from mcpexec.store.base import WorkflowEvent, WorkflowRecord, WorkflowRunRecord


async def _add_events(conn: Conn, query: str, events: list[WorkflowEvent]) -> None:
    if not events:
        return
    rows = event_rows(events)
    async with conn.cursor() as cur:
        await cur.executemany(query, rows)


class PostgresWorkflows:
    """Mixed into ``PostgresStore`` (which provides ``_db`` and ``_q``)."""

    _db: Database
    _q: Mapping[str, str]

    async def define_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        q = self._q
        args = define_args(record)

        async def tx(conn: Conn) -> tuple[WorkflowRecord, bool]:
            await conn.execute(q["lock_workflow"], args)
            latest = await fetch_one(conn, q["latest_workflow"], args)
            if latest is not None and latest["content_hash"] == record.content_hash:
                return workflow_of(latest), False
            version = 1 if latest is None else latest["version"] + 1
            row = await fetch_one(conn, q["insert_workflow"], {**args, "version": version})
            assert row is not None  # RETURNING
            return workflow_of(row), True

        return await self._db.run(tx)

    async def get_workflow(
        self, tenant: str, name: str, version: int | None
    ) -> WorkflowRecord | None:
        query = self._q["latest_workflow" if version is None else "workflow_version"]
        args = {"tenant": tenant, "name": name, "version": version}

        async def tx(conn: Conn) -> WorkflowRecord | None:
            row = await fetch_one(conn, query, args)
            return None if row is None else workflow_of(row)

        return await self._db.run(tx)

    async def list_workflows(self, tenant: str | None) -> list[WorkflowRecord]:
        async def tx(conn: Conn) -> list[WorkflowRecord]:
            rows = await fetch_all(conn, self._q["list_workflows"], {"tenant": tenant})
            return [workflow_of(r) for r in rows]

        return await self._db.run(tx)

    async def workflow_versions(self, tenant: str, name: str) -> list[WorkflowRecord]:
        async def tx(conn: Conn) -> list[WorkflowRecord]:
            args = {"tenant": tenant, "name": name}
            return [
                workflow_of(r) for r in await fetch_all(conn, self._q["workflow_versions"], args)
            ]

        return await self._db.run(tx)

    async def create_workflow_run(
        self, run: WorkflowRunRecord, events: list[WorkflowEvent]
    ) -> WorkflowRunRecord:
        q = self._q
        args = run_args(run)

        async def tx(conn: Conn) -> WorkflowRunRecord:
            try:
                row = await fetch_one(conn, q["insert_workflow_run"], args)
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"workflow run id {run.id!r} already exists") from exc
            assert row is not None  # RETURNING
            await _add_events(conn, q["insert_workflow_event"], events)
            return workflow_run_of(row)

        return await self._db.run(tx, durable=True)

    async def get_workflow_run(
        self, run_id: str, tenant: str | None = None
    ) -> WorkflowRunRecord | None:
        async def tx(conn: Conn) -> WorkflowRunRecord | None:
            row = await fetch_one(conn, self._q["workflow_run"], {"id": run_id, "tenant": tenant})
            return None if row is None else workflow_run_of(row)

        return await self._db.run(tx)

    async def list_workflow_runs(
        self,
        tenant: str | None,
        *,
        workflow: str | None = None,
        statuses: Collection[str] = (),
        limit: int = 100,
    ) -> list[WorkflowRunRecord]:
        args = {
            "tenant": tenant,
            "workflow": workflow,
            "statuses": sorted(statuses) if statuses else None,
            "limit": max(0, limit),
        }

        async def tx(conn: Conn) -> list[WorkflowRunRecord]:
            rows = await fetch_all(conn, self._q["list_workflow_runs"], args)
            return [workflow_run_of(r) for r in rows]

        return await self._db.run(tx)

    async def update_workflow_run(
        self,
        run_id: str,
        expected_revision: int,
        status: str,
        state: dict[str, Any],
        now: datetime,
        events: list[WorkflowEvent],
    ) -> WorkflowRunRecord | None:
        q = self._q
        args = update_args(run_id, expected_revision, status, state, now)

        async def tx(conn: Conn) -> WorkflowRunRecord | None:
            row = await fetch_one(conn, q["update_workflow_run"], args)
            if row is None:
                return None
            await _add_events(conn, q["insert_workflow_event"], events)
            return workflow_run_of(row)

        return await self._db.run(tx)

    async def add_workflow_events(self, events: list[WorkflowEvent]) -> None:
        async def tx(conn: Conn) -> None:
            await _add_events(conn, self._q["insert_workflow_event"], events)

        await self._db.run(tx)

    async def workflow_events(
        self, run_id: str, after: int = 0, limit: int = 500
    ) -> list[WorkflowEvent]:
        args = {"run_id": run_id, "after": after, "limit": max(0, limit)}

        async def tx(conn: Conn) -> list[WorkflowEvent]:
            return [event_of(r) for r in await fetch_all(conn, self._q["workflow_events"], args)]

        return await self._db.run(tx)
