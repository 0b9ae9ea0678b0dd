"""The SQLite store's event log (issue 17): read and prune. The triggers of migration 0011 write
it in the transaction of each change. The decoder and the statement builder serve the
PostgreSQL dialect too (``_pg_events``: the same columns; ``params`` names its placeholders)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mcpexec.store._shared import Row, from_us, to_us
from mcpexec.store._sqlite_db import Database
from mcpexec.store.base import Event, EventBatch, EventQuery


def event_of(row: Row) -> Event:
    return Event(
        id=int(row["id"]),
        at=from_us(int(row["at"])),
        tenant=row["tenant"],
        type=row["type"],
        subject=row["subject"],
        data=json.loads(row["data"]),
        owner=row["owner"],
    )


def read_statement(query: EventQuery, param: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    """The SELECT of ``query`` (up to the ``through`` id), with only the conditions it needs, so
    that a tenant's read uses the ``(tenant, id)`` index and an admin's the primary key."""
    where = [f"id > {param('after')}", f"id <= {param('through')}"]
    args: dict[str, Any] = {"after": query.after, "limit": query.limit}
    if query.tenant is not None:
        where.append(f"tenant = {param('tenant')}")
        args["tenant"] = query.tenant
    if query.owner is not None:
        where.append(f"owner = {param('owner')}")
        args["owner"] = query.owner
    if query.type_prefix:
        # A prefix match that needs no LIKE escaping: the first characters, compared.
        where.append(f"substr(type, 1, {len(query.type_prefix)}) = {param('prefix')}")
        args["prefix"] = query.type_prefix
    if query.subject is not None:
        where.append(f"subject = {param('subject')}")
        args["subject"] = query.subject
    conditions = " AND ".join(where)  # fixed fragments; every value is a bound parameter
    sql = f"SELECT * FROM events WHERE {conditions} ORDER BY id LIMIT {param('limit')}"  # noqa: S608
    return sql, args


def batch_of(rows: list[Any], query: EventQuery, newest: int) -> EventBatch:
    events = [event_of(r) for r in rows]
    if len(events) >= query.limit:
        return EventBatch(events, events[-1].id)
    return EventBatch(events, max(newest, query.after))


def prune_needed(
    lo: int | None, hi: int | None, oldest_at: int | None, keep: int, before: int
) -> bool:
    if lo is None or hi is None or oldest_at is None or lo == hi:
        return False
    return hi - lo + 1 > keep or oldest_at < before


_BOUNDS = "SELECT MIN(id) AS lo, MAX(id) AS hi FROM events"
_OLDEST_AT = "SELECT at FROM events ORDER BY id LIMIT 1"
_PRUNE = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < :hi ORDER BY id"
    " LIMIT :limit) AND (id <= :hi - :keep OR at < :before)"
)


class SqliteEvents:
    """Mixed into ``SqliteStore`` (which provides ``_db``)."""

    _db: Database

    async def read_events(self, query: EventQuery) -> EventBatch:
        def tx(conn: sqlite3.Connection) -> EventBatch:
            newest = conn.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0
            sql, args = read_statement(query, lambda name: f":{name}")
            rows = conn.execute(sql, args | {"through": newest}).fetchall()
            return batch_of(rows, query, newest)

        return await self._db.read(tx)

    async def event_bounds(self) -> tuple[int, int]:
        def tx(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(_BOUNDS).fetchone()
            return (int(row["lo"] or 0), int(row["hi"] or 0))

        return await self._db.read(tx)

    async def prune_events(self, keep: int, before: datetime, limit: int = 5000) -> int:
        cutoff = to_us(before)

        def check(conn: sqlite3.Connection) -> bool:
            row = conn.execute(_BOUNDS).fetchone()
            oldest = conn.execute(_OLDEST_AT).fetchone()
            at = None if oldest is None else oldest["at"]
            return prune_needed(row["lo"], row["hi"], at, keep, cutoff)

        if not await self._db.read(check):
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            hi = conn.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0
            args = {"hi": hi, "limit": limit, "keep": keep, "before": cutoff}
            return conn.execute(_PRUNE, args).rowcount

        return await self._db.write(tx)
