"""The SQLite store's webhook deliveries, alert states and leases (issue 17, migration 0012).

A run's notification is queued by the trigger ``webhook_run_finished`` in the transaction of
its status change; the rest is written here. The statements (``:name`` placeholders) and the
row decoders serve the PostgreSQL dialect too (``_pg_hooks`` turns the placeholders into
``%(name)s``)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from mcpexec.store._shared import Row, from_us, to_us
from mcpexec.store._sqlite_db import Database
from mcpexec.store._sqlite_rows import dt_or_none, us_or_none
from mcpexec.store.base import AlertFigures, AlertRecord, Delivery, NewDelivery

CLAIM = """
UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = :lease
WHERE id IN (SELECT id FROM webhook_deliveries
             WHERE status = 'pending' AND next_at <= :now
             ORDER BY next_at, id LIMIT :limit{lock})
RETURNING *"""
FINISH = """
UPDATE webhook_deliveries
SET status = :status, next_at = :next_at, delivered_at = :delivered_at, last_error = :error
WHERE id = :id AND attempts = :attempt AND status = 'pending'"""
PRUNE = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status <> 'pending' AND created_at < :before ORDER BY id LIMIT :limit)"""
NEXT_AT = "SELECT MIN(next_at) AS next_at FROM webhook_deliveries WHERE status = 'pending'"
INSERT_DELIVERY = """
INSERT INTO webhook_deliveries (tenant, url, event, subject, body, created_at, next_at)
VALUES (:tenant, :url, :event, :subject, :body, :created_at, :created_at)"""
UPSERT_ALERT = """
INSERT INTO alerts (rule, subject, tenant, state, value, message, fired_at, resolved_at,
                    updated_at)
VALUES (:rule, :subject, :tenant, :state, :value, :message, :fired_at, :resolved_at,
        :updated_at)
ON CONFLICT (rule, subject) DO UPDATE SET
    tenant = excluded.tenant, state = excluded.state, value = excluded.value,
    message = excluded.message, fired_at = excluded.fired_at,
    resolved_at = excluded.resolved_at, updated_at = excluded.updated_at"""
TAKE_LEASE = """
INSERT INTO leases (name, holder, expires_at) VALUES (:name, :holder, :until)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.holder = excluded.holder OR leases.expires_at <= :now
RETURNING holder"""
_ALERT_ORDER = "ORDER BY CASE state WHEN 'firing' THEN 0 ELSE 1 END, updated_at DESC, rule"
_ALL_ALERTS = f"SELECT * FROM alerts {_ALERT_ORDER}"  # noqa: S608 - constant fragments
_TENANT_ALERTS = f"SELECT * FROM alerts WHERE tenant = :tenant {_ALERT_ORDER}"  # noqa: S608
# INDEXED BY: with statistics (ANALYZE) and :since unknown at planning, SQLite preferred
# walking all of runs_tenant to skip the GROUP BY's sort: 214 ms at 1M runs, against a range
# of the window's finishes.
FINISHED_COUNTS = """
SELECT tenant, COALESCE(task, '') AS task, status, COUNT(*) AS n FROM runs INDEXED BY runs_finished
WHERE finished_at >= :since AND status IN ('completed', 'failed')
GROUP BY tenant, COALESCE(task, ''), status"""
OLDEST_DUE = """
SELECT tenant, MIN(available_at) AS due FROM runs
WHERE status = 'pending' AND available_at <= :now GROUP BY tenant"""
RUNNING = """
SELECT id, tenant, task, started_at, estimated_duration_ms FROM runs
WHERE status = 'running' AND estimated_duration_ms IS NOT NULL AND started_at IS NOT NULL"""
ISOLATIONS = """
SELECT a.isolation AS isolation, COUNT(*) AS n FROM runs r INDEXED BY runs_finished
JOIN attempts a ON a.run_id = r.id AND a.number = r.attempts
WHERE r.finished_at >= :since AND a.isolation IS NOT NULL GROUP BY a.isolation"""
_EVENT = """
INSERT INTO events (at, tenant, owner, type, subject, data)
VALUES (:at, :tenant, NULL, :type, :subject, :data)"""


def list_deliveries_statement(
    subject: str | None, tenant: str | None, limit: int
) -> tuple[str, dict[str, Any]]:
    where = ["1 = 1"]
    args: dict[str, Any] = {"limit": limit}
    if subject is not None:
        where.append("subject = :subject")
        args["subject"] = subject
    if tenant is not None:
        where.append("tenant = :tenant")
        args["tenant"] = tenant
    conditions = " AND ".join(where)  # fixed fragments; the values are bound parameters
    sql = f"SELECT * FROM webhook_deliveries WHERE {conditions} ORDER BY id DESC LIMIT :limit"  # noqa: S608
    return sql, args


def list_alerts_statement(tenant: str | None) -> tuple[str, dict[str, Any]]:
    if tenant is None:
        return _ALL_ALERTS, {}
    return _TENANT_ALERTS, {"tenant": tenant}


def claim_args(now: datetime, lease_until: datetime, limit: int) -> dict[str, Any]:
    return {"now": to_us(now), "lease": to_us(lease_until), "limit": limit}


def finish_args(
    delivery_id: int,
    attempt: int,
    now: datetime,
    delivered: bool,
    error: str | None,
    next_at: datetime | None,
) -> dict[str, Any]:
    if delivered:
        status, next_us = "delivered", None
    elif next_at is None:
        status, next_us = "failed", None
    else:
        status, next_us = "pending", to_us(next_at)
    return {
        "id": delivery_id,
        "attempt": attempt,
        "status": status,
        "next_at": next_us,
        "delivered_at": to_us(now) if delivered else None,
        "error": None if error is None else error[:2000],
    }


def delivery_args(new: NewDelivery) -> dict[str, Any]:
    return {
        "tenant": new.tenant,
        "url": new.url,
        "event": new.event,
        "subject": new.subject,
        "body": new.body,
        "created_at": to_us(new.created_at),
    }


def alert_args(alert: AlertRecord) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "subject": alert.subject,
        "tenant": alert.tenant,
        "state": alert.state,
        "value": alert.value,
        "message": alert.message,
        "fired_at": to_us(alert.fired_at),
        "resolved_at": us_or_none(alert.resolved_at),
        "updated_at": to_us(alert.updated_at),
    }


def alert_event_args(alert: AlertRecord) -> dict[str, Any]:
    """The event-log entry of an alert's change (``alert.firing`` / ``alert.resolved``)."""
    data = {"rule": alert.rule, "state": alert.state, "value": alert.value}
    return {
        "at": to_us(alert.updated_at),
        "tenant": alert.tenant or "",
        "type": f"alert.{alert.state}",
        "subject": f"{alert.rule}/{alert.subject}" if alert.subject else alert.rule,
        "data": json.dumps(data | {"message": alert.message}),
    }


def figures_of(
    finished: list[Any], oldest: list[Any], running: list[Any], isolations: list[Any]
) -> AlertFigures:
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for row in finished:
        key = (row["tenant"], row["task"])
        completed, failed = counts.get(key, (0, 0))
        if row["status"] == "completed":
            completed += int(row["n"])
        else:
            failed += int(row["n"])
        counts[key] = (completed, failed)
    return AlertFigures(
        finished=counts,
        oldest_due={r["tenant"]: from_us(int(r["due"])) for r in oldest},
        running=[
            (
                r["id"],
                r["tenant"],
                r["task"],
                from_us(int(r["started_at"])),
                int(r["estimated_duration_ms"]),
            )
            for r in running
        ],
        isolations={r["isolation"]: int(r["n"]) for r in isolations},
    )


def delivery_of(row: Row) -> Delivery:
    return Delivery(
        id=int(row["id"]),
        tenant=row["tenant"],
        url=row["url"],
        event=row["event"],
        subject=row["subject"],
        body=row["body"],
        status=row["status"],
        attempts=int(row["attempts"]),
        created_at=from_us(int(row["created_at"])),
        next_at=dt_or_none(row["next_at"]),
        delivered_at=dt_or_none(row["delivered_at"]),
        last_error=row["last_error"],
    )


def alert_of(row: Row) -> AlertRecord:
    return AlertRecord(
        rule=row["rule"],
        subject=row["subject"],
        tenant=row["tenant"],
        state=row["state"],
        value=None if row["value"] is None else float(row["value"]),
        message=row["message"],
        fired_at=from_us(int(row["fired_at"])),
        resolved_at=dt_or_none(row["resolved_at"]),
        updated_at=from_us(int(row["updated_at"])),
    )


def by_due(deliveries: list[Delivery]) -> list[Delivery]:
    return sorted(deliveries, key=lambda d: d.id)


class SqliteHooks:
    """Mixed into ``SqliteStore`` (which provides ``_db``)."""

    _db: Database

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int = 20
    ) -> list[Delivery]:
        args = claim_args(now, lease_until, limit)

        def tx(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(CLAIM.format(lock=""), args).fetchall()
            return by_due([delivery_of(r) for r in rows])

        return await self._db.write(tx)

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
        args = finish_args(delivery_id, attempt, now, delivered, error, next_at)
        return await self._db.write(lambda conn: conn.execute(FINISH, args).rowcount == 1)

    async def prune_deliveries(self, before: datetime, limit: int = 5000) -> int:
        args = {"before": to_us(before), "limit": limit}
        return await self._db.write(lambda conn: conn.execute(PRUNE, args).rowcount)

    async def next_delivery_at(self) -> datetime | None:
        def tx(conn: sqlite3.Connection) -> datetime | None:
            return dt_or_none(conn.execute(NEXT_AT).fetchone()["next_at"])

        return await self._db.read(tx)

    async def list_deliveries(
        self, subject: str | None = None, tenant: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        sql, args = list_deliveries_statement(subject, tenant, limit)
        return await self._db.read(
            lambda conn: [delivery_of(r) for r in conn.execute(sql, args).fetchall()]
        )

    async def record_alert(self, alert: AlertRecord, deliveries: list[NewDelivery]) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(UPSERT_ALERT, alert_args(alert))
            conn.execute(_EVENT, alert_event_args(alert))
            for new in deliveries:
                conn.execute(INSERT_DELIVERY, delivery_args(new))

        await self._db.write(tx, durable=True)

    async def list_alerts(self, tenant: str | None = None) -> list[AlertRecord]:
        sql, args = list_alerts_statement(tenant)
        return await self._db.read(
            lambda conn: [alert_of(r) for r in conn.execute(sql, args).fetchall()]
        )

    async def alert_figures(self, since: datetime, now: datetime) -> AlertFigures:
        args = {"since": to_us(since), "now": to_us(now)}

        def tx(conn: sqlite3.Connection) -> AlertFigures:
            return figures_of(
                conn.execute(FINISHED_COUNTS, args).fetchall(),
                conn.execute(OLDEST_DUE, args).fetchall(),
                conn.execute(RUNNING).fetchall(),
                conn.execute(ISOLATIONS, args).fetchall(),
            )

        return await self._db.read(tx)

    async def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        args = {"name": name, "holder": holder, "now": to_us(now), "until": to_us(until)}
        return await self._db.write(
            lambda conn: conn.execute(TAKE_LEASE, args).fetchone() is not None
        )
