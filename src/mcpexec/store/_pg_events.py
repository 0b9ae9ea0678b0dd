"""The PostgreSQL store's event log (issue 17): read and prune; the triggers of migration 0011
write it. The same table as the SQLite dialect (its decoder and statement builder serve both).

Ids in commit order: a sequence alone would hand out ids in the order transactions *insert*,
so a reader could see id 7 committed before id 6 and skip 6 for ever. The triggers are
therefore deferred constraint triggers: they run at COMMIT and take a transaction-scoped
advisory lock before inserting, so ids are assigned (and become visible) one committing
transaction at a time. The lock is taken when the transaction has done all its other work, so
it cannot deadlock with the row locks a claim or a finish holds.
"""

from __future__ import annotations

from datetime import datetime

from mcpexec.store._pg_db import Conn, Database
from mcpexec.store._pg_tenancy import fetch_all, fetch_one
from mcpexec.store._shared import to_us
from mcpexec.store._sqlite_events import batch_of, prune_needed, read_statement
from mcpexec.store.base import EventBatch, EventQuery

_NEWEST = "SELECT MAX(id) AS hi FROM events"
_BOUNDS = "SELECT MIN(id) AS lo, MAX(id) AS hi FROM events"
_OLDEST_AT = "SELECT at FROM events ORDER BY id LIMIT 1"
_PRUNE = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < %(hi)s ORDER BY id"
    " LIMIT %(limit)s) AND (id <= %(hi)s - %(keep)s OR at < %(before)s)"
)


class PostgresEvents:
    """Mixed into ``PostgresStore`` (which provides ``_db``)."""

    _db: Database

    async def read_events(self, query: EventQuery) -> EventBatch:
        async def tx(conn: Conn) -> EventBatch:
            row = await fetch_one(conn, _NEWEST, {})
            newest = 0 if row is None or row["hi"] is None else int(row["hi"])
            sql, args = read_statement(query, lambda name: f"%({name})s")
            rows = await fetch_all(conn, sql, args | {"through": newest})
            return batch_of(rows, query, newest)

        return await self._db.run(tx)

    async def event_bounds(self) -> tuple[int, int]:
        async def tx(conn: Conn) -> tuple[int, int]:
            row = await fetch_one(conn, _BOUNDS, {})
            assert row is not None
            return (int(row["lo"] or 0), int(row["hi"] or 0))

        return await self._db.run(tx)

    async def prune_events(self, keep: int, before: datetime, limit: int = 5000) -> int:
        cutoff = to_us(before)

        async def tx(conn: Conn) -> int:
            row = await fetch_one(conn, _BOUNDS, {})
            oldest = await fetch_one(conn, _OLDEST_AT, {})
            assert row is not None
            at = None if oldest is None else oldest["at"]
            if not prune_needed(row["lo"], row["hi"], at, keep, cutoff):
                return 0
            args = {"hi": int(row["hi"]), "limit": limit, "keep": keep, "before": cutoff}
            cur = await conn.execute(_PRUNE, args)
            return cur.rowcount

        return await self._db.run(tx)
