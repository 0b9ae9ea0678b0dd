"""The SQLite store's tenancy (issue 10): tokens and their principals, tenants and quotas, the
audit log, and the two quota checks that must share a transaction with the write they guard
(the claim's fair pick under ``max_concurrent``, the enqueue's ``max_queued``).

The check-and-write functions run on the store's database thread inside the transaction
``SqliteStore`` opened (``BEGIN IMMEDIATE``): the write lock is held from the count on, so
claimers and submitters in several processes never over-admit a tenant.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mcpexec.errors import Conflict, QuotaExceeded
from mcpexec.store._shared import EPOCH, Row, from_us, to_us
from mcpexec.store._sqlite_db import Database
from mcpexec.store._sqlite_rows import dt_or_none, us_or_none
from mcpexec.store.base import AuditEntry, ClaimLimits, NewRun, TenantRecord, TokenRecord
from mcpexec.tenancy import Candidate, fair_pick

#: Retry-After for a full queue: runs leave the queue as slots turn over.
QUEUE_RETRY_AFTER_S = 5


def token_of(row: Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        token_hash=row["token_hash"],
        role=row["role"],
        tenant=row["tenant"],
        created_at=from_us(row["created_at"]),
        revoked=bool(row["revoked"]),
        principal_id=row["principal_id"] or row["id"],
        expires_at=dt_or_none(row["expires_at"]),
        last_used_at=dt_or_none(row["last_used_at"]),
        kind=row["kind"],
    )


def tenant_of(row: Row) -> TenantRecord:
    return TenantRecord(
        id=row["id"],
        created_at=from_us(row["created_at"]),
        max_concurrent=row["max_concurrent"],
        max_queued=row["max_queued"],
        max_runtime_s=row["max_runtime_s"],
        max_limits=json.loads(row["max_limits"]),
        default_limits=json.loads(row["default_limits"]),
    )


def audit_of(row: Row) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        at=from_us(row["at"]),
        tenant=row["tenant"],
        actor=row["actor"],
        token_id=row["token_id"],
        action=row["action"],
        target=row["target"],
        detail=json.loads(row["detail"]),
    )


def audit_args(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": to_us(entry.at),
        "tenant": entry.tenant,
        "actor": entry.actor,
        "token_id": entry.token_id,
        "action": entry.action,
        "target": entry.target,
        "detail": json.dumps(entry.detail),
    }


def token_args(token: TokenRecord) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "token_hash": token.token_hash,
        "role": token.role,
        "tenant": token.tenant,
        "created_at": to_us(token.created_at),
        "revoked": token.revoked,
        "principal_id": token.principal,
        "expires_at": us_or_none(token.expires_at),
        "kind": token.kind,
    }


def tenant_args(tenant: TenantRecord) -> dict[str, Any]:
    """The parameters of ``insert_tenant`` and ``update_tenant``."""
    return {
        "id": tenant.id,
        "created_at": to_us(tenant.created_at),
        "max_concurrent": tenant.max_concurrent,
        "max_queued": tenant.max_queued,
        "max_runtime_s": tenant.max_runtime_s,
        "max_limits": json.dumps(dict(tenant.max_limits), sort_keys=True),
        "default_limits": json.dumps(dict(tenant.default_limits), sort_keys=True),
    }


def check_queue(conn: sqlite3.Connection, q: Mapping[str, str], new: NewRun) -> None:
    """Raise ``QuotaExceeded`` when the tenant's queue is full (inside the enqueue's tx)."""
    row = conn.execute(q["tenant_queue"], {"tenant": new.tenant}).fetchone()
    limit = row["max_queued"] if row["max_queued"] is not None else new.default_max_queued
    if limit is not None and row["pending"] >= limit:
        raise queue_full(new.tenant, limit, row["pending"])
    if new.global_max_queued is not None:
        pending = conn.execute(q["all_pending"]).fetchone()["pending"]
        if pending >= new.global_max_queued:
            raise queue_full(None, new.global_max_queued, pending)


def queue_full(tenant: str | None, limit: int, pending: int) -> QuotaExceeded:
    whose = "the server" if tenant is None else f"tenant {tenant!r}"
    setting = "max_queued" if tenant is None else "its limit max_queued"
    return QuotaExceeded(
        f"{whose} has {pending} runs queued, {setting} is {limit}; "
        f"retry after {QUEUE_RETRY_AFTER_S} s",
        limit="max_queued" if tenant is not None else "global_max_queued",
        tenant=tenant,
        max_queued=limit,
        queued=pending,
        retry_after_s=QUEUE_RETRY_AFTER_S,
    )


def record_submit(conn: sqlite3.Connection, q: Mapping[str, str], new: NewRun) -> None:
    entry = submit_entry(new)
    conn.execute(q["insert_audit"], audit_args(entry))


def submit_entry(new: NewRun) -> AuditEntry:
    return AuditEntry(
        at=new.created_at,
        tenant=new.tenant,
        actor=new.owner or "",
        token_id=new.token_id,
        action="submit",
        target=new.id,
    )


def pick_claims(
    conn: sqlite3.Connection,
    q: Mapping[str, str],
    limit: int,
    now_us: int,
    limits: ClaimLimits | None,
) -> list[int]:
    """The seqs one claim takes (inside the claim's tx): ``fair_pick`` over each ready tenant's
    first ``limit`` claimable runs, under each tenant's ``max_concurrent``."""
    default = None if limits is None else limits.default_max_concurrent
    have = frozenset() if limits is None else limits.worker_labels
    heads = q["claim_heads_labelled"] if have else q["claim_heads"]
    tenants = conn.execute(q["claim_ready_tenants"], {"default_max_concurrent": default}).fetchall()
    running = {r["tenant"]: r["running"] for r in tenants}
    caps = {r["tenant"]: r["max_concurrent"] for r in tenants}
    candidates: list[Candidate[int]] = []
    for row in tenants:
        cap = row["max_concurrent"]
        want = limit if cap is None else min(limit, cap - row["running"])
        if want <= 0:
            continue
        args = {"tenant": row["tenant"], "now": now_us, "limit": want}
        if have:
            args["have"] = json.dumps(sorted(have))
        candidates.extend(
            Candidate(key=r["seq"], tenant=r["tenant"], priority=r["priority"], seq=r["seq"])
            for r in conn.execute(heads, args)
        )
    return fair_pick(candidates, running, caps, limit)


class SqliteTenancy:
    """The tenancy methods of ``SqliteStore`` (tokens, tenants, audit)."""

    _db: Database
    _q: Mapping[str, str]

    async def add_token(self, token: TokenRecord) -> None:
        args = token_args(token)
        q = self._q

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(q["ensure_tenant"], args)
            conn.execute(q["ensure_principal"], args)
            try:
                conn.execute(q["insert_token"], args)
            except sqlite3.IntegrityError as exc:
                raise Conflict("a token with this id or hash already exists") from exc

        await self._db.write(tx)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        q = self._q

        def tx(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(q["token_by_hash"], {"token_hash": token_hash}).fetchone()
            return None if row is None else token_of(row)

        return await self._db.read(tx)

    async def list_tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        q = self._q
        return await self._db.read(
            lambda conn: [token_of(r) for r in conn.execute(q["list_tokens"], {"tenant": tenant})]
        )

    async def revoke_token(self, token_id: str, tenant: str | None = None) -> TokenRecord | None:
        q = self._q

        def tx(conn: sqlite3.Connection) -> bool:
            args = {"token_id": token_id, "tenant": tenant}
            return conn.execute(q["revoke_token"], args).fetchone() is not None

        if not await self._db.write(tx):
            return None
        return next((t for t in await self.list_tokens(tenant) if t.id == token_id), None)

    async def touch_token(self, token_id: str, now: datetime) -> None:
        q = self._q
        args = {"token_id": token_id, "now": to_us(now)}
        await self._db.write(lambda conn: conn.execute(q["touch_token"], args) and None)

    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        q = self._q
        args = tenant_args(tenant)

        def tx(conn: sqlite3.Connection) -> TenantRecord:
            try:
                conn.execute(q["insert_tenant"], args)
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"tenant {tenant.id!r} already exists", tenant=tenant.id) from exc
            return tenant_of(conn.execute(q["get_tenant"], {"id": tenant.id}).fetchone())

        return await self._db.write(tx)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        q = self._q

        def tx(conn: sqlite3.Connection) -> TenantRecord | None:
            row = conn.execute(q["get_tenant"], {"id": tenant_id}).fetchone()
            return None if row is None else tenant_of(row)

        return await self._db.read(tx)

    async def list_tenants(self) -> list[TenantRecord]:
        q = self._q
        return await self._db.read(
            lambda conn: [tenant_of(r) for r in conn.execute(q["list_tenants"])]
        )

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
        q = self._q
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

        def tx(conn: sqlite3.Connection) -> TenantRecord | None:
            row = conn.execute(q["update_tenant"], args).fetchone()
            return None if row is None else tenant_of(row)

        return await self._db.write(tx)

    async def tenant_load(self, tenant: str) -> tuple[int, int]:
        q = self._q

        def tx(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(q["tenant_load"], {"tenant": tenant}).fetchone()
            return int(row["running"]), int(row["pending"])

        return await self._db.read(tx)

    async def add_audit(self, entry: AuditEntry) -> None:
        q = self._q
        args = audit_args(entry)
        await self._db.write(lambda conn: conn.execute(q["insert_audit"], args) and None)

    async def list_audit(
        self, tenant: str | None, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        q = self._q
        args = {"tenant": tenant, "limit": limit, "before": 2**63 - 1 if before is None else before}
        return await self._db.read(
            lambda conn: [audit_of(r) for r in conn.execute(q["list_audit"], args)]
        )
