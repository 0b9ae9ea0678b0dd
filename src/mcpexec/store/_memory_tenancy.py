"""``MemoryStore``'s tenancy (issue 10): tokens and principals, tenants, the audit log, and the
quota checks of enqueue and claim (the same ``tenancy.fair_pick`` as the SQLite store's).

Like the rest of ``MemoryStore``, no method awaits inside, so each is atomic on one loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime

from mcpexec.errors import Conflict, QuotaExceeded
from mcpexec.store._shared import utc
from mcpexec.store.base import AuditEntry, ClaimLimits, NewRun, TenantRecord, TokenRecord
from mcpexec.tenancy import Candidate, fair_pick

#: Retry-After for a full queue (the SQLite store's figure).
QUEUE_RETRY_AFTER_S = 5


class MemoryTenancy:
    """State lives in ``_tenancy_*`` attributes created on first use."""

    @property
    def _tokens_by_id(self) -> dict[str, TokenRecord]:
        found: dict[str, TokenRecord] | None = getattr(self, "_tenancy_tokens", None)
        if found is None:
            found = {}
            self._tenancy_tokens = found
        return found

    @property
    def _tenants(self) -> dict[str, TenantRecord]:
        found: dict[str, TenantRecord] | None = getattr(self, "_tenancy_tenants", None)
        if found is None:
            found = self._tenancy_tenants = {
                "default": TenantRecord(id="default", created_at=utc(datetime.now().astimezone()))
            }
        return found

    @property
    def _audit(self) -> list[AuditEntry]:
        found: list[AuditEntry] | None = getattr(self, "_tenancy_audit", None)
        if found is None:
            found = []
            self._tenancy_audit = found
        return found

    # -- quota checks, called by MemoryStore.enqueue / claim ------------------------------------
    def _check_queue(self, new: NewRun, pending: int, pending_all: int) -> None:
        tenant = self._tenants.get(new.tenant)
        own = None if tenant is None else tenant.max_queued
        limit = own if own is not None else new.default_max_queued
        if limit is not None and pending >= limit:
            raise QuotaExceeded(
                f"tenant {new.tenant!r} has {pending} runs queued, its limit max_queued is "
                f"{limit}; retry after {QUEUE_RETRY_AFTER_S} s",
                limit="max_queued",
                tenant=new.tenant,
                max_queued=limit,
                queued=pending,
                retry_after_s=QUEUE_RETRY_AFTER_S,
            )
        if new.global_max_queued is not None and pending_all >= new.global_max_queued:
            raise QuotaExceeded(
                f"the server has {pending_all} runs queued, max_queued is "
                f"{new.global_max_queued}; retry after {QUEUE_RETRY_AFTER_S} s",
                limit="global_max_queued",
                tenant=new.tenant,
                max_queued=new.global_max_queued,
                queued=pending_all,
                retry_after_s=QUEUE_RETRY_AFTER_S,
            )
        self._append_audit(
            AuditEntry(
                at=utc(new.created_at),
                tenant=new.tenant,
                actor=new.owner or "",
                token_id=new.token_id,
                action="submit",
                target=new.id,
            )
        )

    def _fair_pick(
        self,
        ready: Iterable[tuple[str, str, int, int]],
        running: dict[str, int],
        limit: int,
        limits: ClaimLimits | None,
    ) -> list[str]:
        """``ready``: (run id, tenant, priority, seq) of the claimable runs."""
        default = None if limits is None else limits.default_max_concurrent
        candidates = [Candidate(key=i, tenant=t, priority=p, seq=s) for i, t, p, s in ready]
        caps: dict[str, int | None] = {}
        for c in candidates:
            tenant = self._tenants.get(c.tenant)
            own = None if tenant is None else tenant.max_concurrent
            caps[c.tenant] = own if own is not None else default
        return fair_pick(candidates, running, caps, limit)

    def _append_audit(self, entry: AuditEntry) -> None:
        self._audit.append(dataclasses.replace(entry, seq=len(self._audit) + 1, at=utc(entry.at)))

    # -- tokens ----------------------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None:
        tokens = self._tokens_by_id
        if token.id in tokens or any(t.token_hash == token.token_hash for t in tokens.values()):
            raise Conflict("a token with this id or hash already exists")
        if token.tenant not in self._tenants:
            self._tenants[token.tenant] = TenantRecord(
                id=token.tenant, created_at=utc(token.created_at)
            )
        tokens[token.id] = dataclasses.replace(
            token, created_at=utc(token.created_at), principal_id=token.principal
        )

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return next((t for t in self._tokens_by_id.values() if t.token_hash == token_hash), None)

    async def list_tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        found = [t for t in self._tokens_by_id.values() if tenant is None or t.tenant == tenant]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    async def revoke_token(self, token_id: str, tenant: str | None = None) -> TokenRecord | None:
        token = self._tokens_by_id.get(token_id)
        if token is None or (tenant is not None and token.tenant != tenant):
            return None
        token = self._tokens_by_id[token_id] = dataclasses.replace(token, revoked=True)
        return token

    async def touch_token(self, token_id: str, now: datetime) -> None:
        token = self._tokens_by_id.get(token_id)
        if token is not None:
            self._tokens_by_id[token_id] = dataclasses.replace(token, last_used_at=utc(now))

    # -- tenants ---------------------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        if tenant.id in self._tenants:
            raise Conflict(f"tenant {tenant.id!r} already exists", tenant=tenant.id)
        record = self._tenants[tenant.id] = dataclasses.replace(
            tenant,
            created_at=utc(tenant.created_at),
            max_limits=dict(tenant.max_limits),
            default_limits=dict(tenant.default_limits),
        )
        return record

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return self._tenants.get(tenant_id)

    async def list_tenants(self) -> list[TenantRecord]:
        return [self._tenants[k] for k in sorted(self._tenants)]

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
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return None
        record = self._tenants[tenant_id] = dataclasses.replace(
            tenant,
            max_concurrent=max_concurrent,
            max_queued=max_queued,
            max_runtime_s=max_runtime_s,
            max_limits=dict(max_limits or {}),
            default_limits=dict(default_limits or {}),
        )
        return record

    # -- audit -----------------------------------------------------------------------------------
    async def add_audit(self, entry: AuditEntry) -> None:
        self._append_audit(entry)

    async def list_audit(
        self, tenant: str | None, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        found = [
            e
            for e in reversed(self._audit)
            if (tenant is None or e.tenant == tenant) and (before is None or e.seq < before)
        ]
        return found[: max(limit, 0)]
