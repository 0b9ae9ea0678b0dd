"""The PostgreSQL store's webhook deliveries, alert states and leases (issue 17, migration
0012): the SQLite dialect's statements and decoders (``_sqlite_hooks``) with ``%(name)s``
placeholders; a claim skips rows another process is claiming (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from mcpexec.store import _sqlite_hooks as lite
from mcpexec.store._pg_db import Conn, Database
from mcpexec.store._pg_tenancy import fetch_all, fetch_one
from mcpexec.store._shared import to_us
from mcpexec.store._sqlite_rows import dt_or_none
from mcpexec.store.base import AlertFigures, AlertRecord, Delivery, NewDelivery

_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_]+)")


_INDEXED_BY = re.compile(r" INDEXED BY \w+")


def pg(sql: str) -> str:
    """``:name`` → ``%(name)s``; SQLite's ``INDEXED BY`` dropped (the planner chooses)."""
    return _PLACEHOLDER.sub(r"%(\1)s", _INDEXED_BY.sub("", sql))


_CLAIM = pg(lite.CLAIM.format(lock=" FOR UPDATE SKIP LOCKED"))
_FINISH = pg(lite.FINISH)
_PRUNE = pg(lite.PRUNE)
_INSERT_DELIVERY = pg(lite.INSERT_DELIVERY)
_UPSERT_ALERT = pg(lite.UPSERT_ALERT)
_TAKE_LEASE = pg(lite.TAKE_LEASE)
_EVENT = "SELECT mcpexec_event(%(tenant)s, NULL, %(type)s, %(subject)s, %(data)s::json)"


class PostgresHooks:
    """Mixed into ``PostgresStore`` (which provides ``_db``)."""

    _db: Database

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int = 20
    ) -> list[Delivery]:
        args = lite.claim_args(now, lease_until, limit)

        async def tx(conn: Conn) -> list[Delivery]:
            rows = await fetch_all(conn, _CLAIM, args)
            return lite.by_due([lite.delivery_of(r) for r in rows])

        return await self._db.run(tx)

    async def finish_delivery(
        self,
        delivery_id: int,
        attempt: int,
        now: datetime,
        *,
        delivered: bool,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        args = lite.finish_args(delivery_id, attempt, now, delivered, error, next_at)

        async def tx(conn: Conn) -> bool:
            cur = await conn.execute(_FINISH, args)
            return cur.rowcount == 1

        return await self._db.run(tx)

    async def prune_deliveries(self, before: datetime, limit: int = 5000) -> int:
        args = {"before": to_us(before), "limit": limit}

        async def tx(conn: Conn) -> int:
            cur = await conn.execute(_PRUNE, args)
            return cur.rowcount

        return await self._db.run(tx)

    async def next_delivery_at(self) -> datetime | None:
        async def tx(conn: Conn) -> datetime | None:
            row = await fetch_one(conn, lite.NEXT_AT, {})
            return None if row is None else dt_or_none(row["next_at"])

        return await self._db.run(tx)

    async def list_deliveries(
        self, subject: str | None = None, tenant: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        sql, args = lite.list_deliveries_statement(subject, tenant, limit)

        async def tx(conn: Conn) -> list[Delivery]:
            return [lite.delivery_of(r) for r in await fetch_all(conn, pg(sql), args)]

        return await self._db.run(tx)

    async def record_alert(self, alert: AlertRecord, deliveries: list[NewDelivery]) -> None:
        async def tx(conn: Conn) -> None:
            await conn.execute(_UPSERT_ALERT, lite.alert_args(alert))
            await conn.execute(_EVENT, lite.alert_event_args(alert))
            for new in deliveries:
                await conn.execute(_INSERT_DELIVERY, lite.delivery_args(new))

        await self._db.run(tx, durable=True)

    async def list_alerts(self, tenant: str | None = None) -> list[AlertRecord]:
        sql, args = lite.list_alerts_statement(tenant)

        async def tx(conn: Conn) -> list[AlertRecord]:
            return [lite.alert_of(r) for r in await fetch_all(conn, pg(sql), args)]

        return await self._db.run(tx)

    async def alert_figures(self, since: datetime, now: datetime) -> AlertFigures:
        args = {"since": to_us(since), "now": to_us(now)}

        async def tx(conn: Conn) -> AlertFigures:
            return lite.figures_of(
                await fetch_all(conn, pg(lite.FINISHED_COUNTS), args),
                await fetch_all(conn, pg(lite.OLDEST_DUE), args),
                await fetch_all(conn, lite.RUNNING, {}),
                await fetch_all(conn, pg(lite.ISOLATIONS), args),
            )

        return await self._db.run(tx)

    async def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        args: dict[str, Any] = {
            "name": name,
            "holder": holder,
            "now": to_us(now),
            "until": to_us(until),
        }

        async def tx(conn: Conn) -> bool:
            return await fetch_one(conn, _TAKE_LEASE, args) is not None

        return await self._db.run(tx)
