"""The SQLite store's workflows (issue 16): definitions, workflow runs and their events.

Each transaction body runs on the store's database thread (``BEGIN IMMEDIATE`` for writes),
so the define's "latest version" read and the run update's revision check cannot interleave
with another process's write. The statements live here, beside the code that runs them, so the
whole workflow part of the store is one file. The row decoders serve the PostgreSQL dialect too
(``_pg_workflows``: the same columns).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import datetime
from typing import Any

from mcpexec.errors import Conflict
from mcpexec.store._shared import Row, from_us, to_us
from mcpexec.store._sqlite_db import Database
from mcpexec.store.base import WorkflowEvent, WorkflowRecord, WorkflowRunRecord

_LATEST = (
    "SELECT * FROM workflows WHERE tenant = :tenant AND name = :name ORDER BY version DESC LIMIT 1"
)
_VERSION = "SELECT * FROM workflows WHERE tenant = :tenant AND name = :name AND version = :version"
_INSERT = (
    "INSERT INTO workflows (tenant, name, version, owner, content_hash, definition, created_at)"
    " VALUES (:tenant, :name, :version, :owner, :content_hash, :definition, :created_at)"
    " RETURNING *"
)
_LIST = (
    "SELECT w.* FROM workflows w WHERE (:tenant IS NULL OR w.tenant = :tenant) AND w.version ="
    " (SELECT MAX(version) FROM workflows v WHERE v.tenant = w.tenant AND v.name = w.name)"
    " ORDER BY w.tenant, w.name"
)
_VERSIONS = "SELECT * FROM workflows WHERE tenant = :tenant AND name = :name ORDER BY version"
_INSERT_RUN = (
    "INSERT INTO workflow_runs (id, tenant, owner, workflow, version, params, status, state,"
    " revision, created_at, updated_at) VALUES (:id, :tenant, :owner, :workflow, :version,"
    " :params, :status, :state, 1, :created_at, :updated_at) RETURNING *"
)
_GET_RUN = "SELECT * FROM workflow_runs WHERE id = :id AND (:tenant IS NULL OR tenant = :tenant)"
_LIST_RUNS = (
    "SELECT * FROM workflow_runs WHERE (:tenant IS NULL OR tenant = :tenant)"
    " AND (:workflow IS NULL OR workflow = :workflow)"
    " AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))"
    " ORDER BY seq DESC LIMIT :limit"
)
_UPDATE_RUN = (
    "UPDATE workflow_runs SET status = :status, state = :state, updated_at = :now,"
    " revision = revision + 1 WHERE id = :id AND revision = :expected RETURNING *"
)
_INSERT_EVENT = (
    "INSERT INTO workflow_events (run_id, at, kind, step, detail)"
    " VALUES (:run_id, :at, :kind, :step, :detail)"
)
_EVENTS = (
    "SELECT * FROM workflow_events WHERE run_id = :run_id AND seq > :after"
    " ORDER BY seq LIMIT :limit"
)


def workflow_of(row: Row) -> WorkflowRecord:
    return WorkflowRecord(
        tenant=row["tenant"],
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        content_hash=row["content_hash"],
        definition=json.loads(row["definition"]),
        created_at=from_us(row["created_at"]),
    )


def workflow_run_of(row: Row) -> WorkflowRunRecord:
    return WorkflowRunRecord(
        id=row["id"],
        tenant=row["tenant"],
        owner=row["owner"],
        workflow=row["workflow"],
        version=row["version"],
        params=json.loads(row["params"]),
        status=row["status"],
        state=json.loads(row["state"]),
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
        revision=row["revision"],
        seq=row["seq"],
    )


def event_of(row: Row) -> WorkflowEvent:
    return WorkflowEvent(
        run_id=row["run_id"],
        at=from_us(row["at"]),
        kind=row["kind"],
        step=row["step"],
        detail=json.loads(row["detail"]),
        seq=row["seq"],
    )


def define_args(record: WorkflowRecord) -> dict[str, Any]:
    """The parameters of a define, for both dialects (the version is added once known)."""
    return {
        "tenant": record.tenant,
        "name": record.name,
        "owner": record.owner,
        "content_hash": record.content_hash,
        "definition": json.dumps(record.definition, sort_keys=True),
        "created_at": to_us(record.created_at),
    }


def run_args(run: WorkflowRunRecord) -> dict[str, Any]:
    """The parameters of a new workflow run, for both dialects."""
    return {
        "id": run.id,
        "tenant": run.tenant,
        "owner": run.owner,
        "workflow": run.workflow,
        "version": run.version,
        "params": json.dumps(run.params),
        "status": run.status,
        "state": json.dumps(run.state),
        "created_at": to_us(run.created_at),
        "updated_at": to_us(run.updated_at),
    }


def update_args(
    run_id: str, expected_revision: int, status: str, state: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The parameters of a compare-and-set update, for both dialects."""
    return {
        "id": run_id,
        "expected": expected_revision,
        "status": status,
        "state": json.dumps(state),
        "now": to_us(now),
    }


def event_rows(events: list[WorkflowEvent]) -> list[dict[str, Any]]:
    """The rows of ``events``, for both dialects."""
    return [
        {
            "run_id": e.run_id,
            "at": to_us(e.at),
            "kind": e.kind,
            "step": e.step,
            "detail": json.dumps(e.detail),
        }
        for e in events
    ]


def _add_events(conn: sqlite3.Connection, events: list[WorkflowEvent]) -> None:
    conn.executemany(_INSERT_EVENT, event_rows(events))


class SqliteWorkflows:
    """Mixed into ``SqliteStore`` (which provides ``_db``)."""

    _db: Database

    async def define_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        args = define_args(record)

        def tx(conn: sqlite3.Connection) -> tuple[WorkflowRecord, bool]:
            latest = conn.execute(_LATEST, args).fetchone()
            if latest is not None and latest["content_hash"] == record.content_hash:
                return workflow_of(latest), False
            version = 1 if latest is None else latest["version"] + 1
            row = conn.execute(_INSERT, {**args, "version": version}).fetchone()
            return workflow_of(row), True

        return await self._db.write(tx)

    async def get_workflow(
        self, tenant: str, name: str, version: int | None
    ) -> WorkflowRecord | None:
        args = {"tenant": tenant, "name": name, "version": version}

        def tx(conn: sqlite3.Connection) -> WorkflowRecord | None:
            row = conn.execute(_LATEST if version is None else _VERSION, args).fetchone()
            return None if row is None else workflow_of(row)

        return await self._db.read(tx)

    async def list_workflows(self, tenant: str | None) -> list[WorkflowRecord]:
        def tx(conn: sqlite3.Connection) -> list[WorkflowRecord]:
            return [workflow_of(r) for r in conn.execute(_LIST, {"tenant": tenant})]

        return await self._db.read(tx)

    async def workflow_versions(self, tenant: str, name: str) -> list[WorkflowRecord]:
        def tx(conn: sqlite3.Connection) -> list[WorkflowRecord]:
            rows = conn.execute(_VERSIONS, {"tenant": tenant, "name": name})
            return [workflow_of(r) for r in rows]

        return await self._db.read(tx)

    async def create_workflow_run(
        self, run: WorkflowRunRecord, events: list[WorkflowEvent]
    ) -> WorkflowRunRecord:
        args = run_args(run)

        def tx(conn: sqlite3.Connection) -> WorkflowRunRecord:
            try:
                row = conn.execute(_INSERT_RUN, args).fetchone()
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"workflow run id {run.id!r} already exists") from exc
            _add_events(conn, events)
            return workflow_run_of(row)

        return await self._db.write(tx, durable=True)

    async def get_workflow_run(
        self, run_id: str, tenant: str | None = None
    ) -> WorkflowRunRecord | None:
        def tx(conn: sqlite3.Connection) -> WorkflowRunRecord | None:
            row = conn.execute(_GET_RUN, {"id": run_id, "tenant": tenant}).fetchone()
            return None if row is None else workflow_run_of(row)

        return await self._db.read(tx)

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
            "statuses": json.dumps(sorted(statuses)) if statuses else None,
            "limit": max(0, limit),
        }

        def tx(conn: sqlite3.Connection) -> list[WorkflowRunRecord]:
            return [workflow_run_of(r) for r in conn.execute(_LIST_RUNS, args)]

        return await self._db.read(tx)

    async def update_workflow_run(
        self,
        run_id: str,
        expected_revision: int,
        status: str,
        state: dict[str, Any],
        now: datetime,
        events: list[WorkflowEvent],
    ) -> WorkflowRunRecord | None:
        args = update_args(run_id, expected_revision, status, state, now)

        def tx(conn: sqlite3.Connection) -> WorkflowRunRecord | None:
            row = conn.execute(_UPDATE_RUN, args).fetchone()
            if row is None:
                return None
            _add_events(conn, events)
            return workflow_run_of(row)

        return await self._db.write(tx)

    async def add_workflow_events(self, events: list[WorkflowEvent]) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            _add_events(conn, events)

        await self._db.write(tx)

    async def workflow_events(
        self, run_id: str, after: int = 0, limit: int = 500
    ) -> list[WorkflowEvent]:
        args = {"run_id": run_id, "after": after, "limit": max(0, limit)}

        def tx(conn: sqlite3.Connection) -> list[WorkflowEvent]:
            return [event_of(r) for r in conn.execute(_EVENTS, args)]

        return await self._db.read(tx)
