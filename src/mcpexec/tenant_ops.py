"""Tenants, tokens, quotas and the audit log as App operations (issue 10).

Every operation checks the caller with ``App.check_access`` (the one rule of every surface):
the admin role is global; an operator manages the tokens of its own tenant and reads its audit
log; a tenant of another caller is not found (404)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcpexec.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    TenantNotFound,
    TokenNotFound,
    Unauthorized,
)
from mcpexec.models import DEFAULT_TENANT, ExecSpec, Limits, utcnow
from mcpexec.store.base import AuditEntry, TenantRecord, TokenRecord
from mcpexec.tenancy import GRANTABLE, TENANT_ID, Action, Role, hash_token, role_of

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

#: ``last_used_at`` is written at most this often per token (a write per request would cost
#: more than the request).
TOUCH_EVERY = timedelta(seconds=60)
#: A verified token is trusted this long without asking the store again (every request of
#: every surface authenticates; the store read was a fifth of a small request's CPU). A
#: revocation made through this process takes effect at once (it forgets the token); one made
#: through another process sharing the store (another API node) within this time.
VERIFIED_FOR_S = 1.0
VERIFIED_MAX = 4096  # entries; all are forgotten when full (a flood of distinct tokens)
TOKEN_PREFIX = "mcpx_"  # noqa: S105 - a prefix, not a secret

#: The fields of ``models.Limits`` a tenant may give a default and a maximum.
TENANT_LIMIT_FIELDS = ("memory_mb", "cpu_s", "pids", "disk_mb")


@dataclass(frozen=True, slots=True)
class Quota:
    """A tenant's limits in force (its own, else the server's) and what it uses now."""

    tenant: str
    max_concurrent: int | None
    max_queued: int | None
    running: int
    queued: int
    #: The tenant's own settings (``None``: the server's default applies).
    own_max_concurrent: int | None
    own_max_queued: int | None
    #: Caps a run's timeout (``None``: only the server's ``max_timeout_s``).
    max_runtime_s: int | None = None
    #: The tenant's maximum and default resource limits (fields of ``models.Limits``).
    max_limits: Mapping[str, int] = field(default_factory=dict)
    default_limits: Mapping[str, int] = field(default_factory=dict)


def tenant_spec(spec: ExecSpec, tenant: TenantRecord, default_timeout_s: float) -> ExecSpec:
    """``spec`` under ``tenant``'s runtime cap and resource limits, the one rule of every
    submit (REST, MCP, CLI, spool, a task's run, a schedule's fire).

    - no ``timeout_s``: ``min(default_timeout_s, max_runtime_s)``; over ``max_runtime_s``: 422;
    - a limit over the tenant's maximum: 422 naming ``limits.<field>``;
    - a limit not given: the tenant's default, else its maximum (so the maximum always holds).

    Without a cap or limits of the tenant's own the spec is returned unchanged."""
    changes: dict[str, Any] = {}
    cap = tenant.max_runtime_s
    if cap is not None:
        if spec.timeout_s is None:
            changes["timeout_s"] = float(min(default_timeout_s, cap))
        elif spec.timeout_s > cap:
            raise InvalidRequest(
                f"timeout_s {spec.timeout_s:g} is over tenant {tenant.id!r}'s max_runtime_s "
                f"{cap}: ask for at most {cap} s (or omit timeout_s), or ask an admin to raise "
                f"it (mcpexec tenants set {tenant.id} --max-runtime ...)",
                field="timeout_s",
            )
    limits: dict[str, int] = {}
    for name in TENANT_LIMIT_FIELDS:
        given: int | None = getattr(spec.limits, name)
        maximum = tenant.max_limits.get(name)
        if given is None:
            filled = tenant.default_limits.get(name, maximum)
            if filled is not None:  # a default over the maximum: the maximum
                limits[name] = filled if maximum is None else min(filled, maximum)
        elif maximum is not None and given > maximum:
            raise InvalidRequest(
                f"limits.{name} {given} is over tenant {tenant.id!r}'s maximum {maximum}: ask "
                f"for at most {maximum} (or omit it for the tenant's default), or ask an admin "
                f"to raise it (mcpexec tenants set {tenant.id} --{name.replace('_', '-')} ...)",
                field=f"limits.{name}",
            )
    if limits:
        changes["limits"] = spec.limits.model_copy(update=limits)
    return spec.model_copy(update=changes) if changes else spec


def check_tenant_limits(
    max_runtime_s: int | None, max_limits: Mapping[str, int], default_limits: Mapping[str, int]
) -> None:
    """Refuse a tenant's limits no run could have: unknown fields, values outside what
    ``models.Limits`` takes. (A default over the maximum is not refused: the maximum wins.)"""
    if max_runtime_s is not None and max_runtime_s < 1:
        raise InvalidRequest(
            "max_runtime_s is a number of seconds, at least 1", field="max_runtime_s"
        )
    for kind, given in (("max_limits", max_limits), ("default_limits", default_limits)):
        for name, value in given.items():
            if name not in TENANT_LIMIT_FIELDS:
                known = ", ".join(TENANT_LIMIT_FIELDS)
                raise InvalidRequest(f"{kind}.{name}: not one of {known}", field=f"{kind}.{name}")
            try:
                Limits.model_validate({name: value})
            except ValidationError as exc:
                raise InvalidRequest(
                    f"{kind}.{name} {value!r}: {exc.errors()[0]['msg']}", field=f"{kind}.{name}"
                ) from exc


class TenantOps:
    def __init__(self, app: App, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self._touched: dict[str, datetime] = {}
        self._verified: dict[str, tuple[TokenRecord, float]] = {}  # hash -> (record, when)
        self._clock = clock

    # -- authentication ---------------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized()
        return await self.authenticate_hash(hash_token(token))

    async def authenticate_hash(self, token_hash: str) -> Principal:
        """The principal of the token with this hash (a dashboard session keeps the hash,
        never the token); the same checks as ``authenticate``."""
        from mcpexec.app import Principal

        record = self._recently_verified(token_hash)
        if record is None:
            record = await self.app.store.token_by_hash(token_hash)
            if record is not None and not record.revoked:
                if len(self._verified) >= VERIFIED_MAX:
                    self._verified.clear()
                self._verified[token_hash] = (record, self._clock())
        now = utcnow()
        if record is None or record.revoked:
            raise Unauthorized("the bearer token is unknown or revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("the bearer token has expired")
        last = self._touched.get(record.id) or record.last_used_at
        if last is None or now - last >= TOUCH_EVERY:
            self._touched[record.id] = now
            await self.app.store.touch_token(record.id, now)
        return Principal(record.id, record.name, record.role, record.tenant, record.principal)

    def _recently_verified(self, token_hash: str) -> TokenRecord | None:
        hit = self._verified.get(token_hash)
        if hit is None:
            return None
        record, at = hit
        if self._clock() - at >= VERIFIED_FOR_S:
            del self._verified[token_hash]
            return None
        return record

    async def issue_token(
        self,
        name: str,
        role: str,
        tenant: str,
        *,
        principal_id: str | None = None,
        expires_at: datetime | None = None,
        kind: str = "service",
    ) -> tuple[str, TokenRecord]:
        """Store a new token (its hash only) for ``principal_id`` or a new principal; returns
        the token (shown once) and its record. No access check: callers check."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = uuid.uuid4().hex[:12]
        record = TokenRecord(
            id=token_id,
            name=name,
            token_hash=hash_token(token),
            role=role,
            tenant=tenant,
            created_at=utcnow(),
            principal_id=principal_id or token_id,
            expires_at=expires_at,
            kind=kind,
        )
        await self.app.store.add_token(record)
        return token, record

    # -- tokens -----------------------------------------------------------------------------------
    async def create_token(
        self,
        principal: Principal,
        *,
        name: str,
        role: str,
        tenant: str | None = None,
        expires_in_s: float | None = None,
        kind: str = "service",
    ) -> tuple[str, TokenRecord]:
        tenant = tenant or principal.tenant
        self.app.check_access(principal, Action.MANAGE_TOKENS, tenant, what="tenant", ident=tenant)
        wanted = role_of(role)
        if wanted is None:
            roles = ", ".join(r.value for r in Role)
            raise InvalidRequest(f"role {role!r} is not one of {roles}", field="role")
        mine = role_of(principal.role)
        if mine is None or wanted not in GRANTABLE[mine]:
            raise Forbidden(f"role {principal.role!r} may not create {role!r} tokens")
        if kind not in ("user", "service"):
            raise InvalidRequest("kind is user or service", field="kind")
        await self._tenant(tenant)
        expires_at = None if expires_in_s is None else utcnow() + timedelta(seconds=expires_in_s)
        token, record = await self.issue_token(
            name, wanted.value, tenant, expires_at=expires_at, kind=kind
        )
        await self.audit(
            principal, "token.create", record.id, tenant=tenant, detail={"role": role, "name": name}
        )
        return token, record

    async def list_tokens(
        self, principal: Principal, tenant: str | None = None
    ) -> list[TokenRecord]:
        if not principal.is_admin:
            tenant = tenant or principal.tenant
        if tenant is not None:
            self.app.check_access(
                principal, Action.MANAGE_TOKENS, tenant, what="tenant", ident=tenant
            )
        else:
            self.app.check_access(principal, Action.MANAGE_TOKENS)
        return await self.app.store.list_tokens(tenant)

    async def revoke_token(self, principal: Principal, token_id: str) -> TokenRecord:
        scope = None if principal.is_admin else principal.tenant
        found = next((t for t in await self.app.store.list_tokens(scope) if t.id == token_id), None)
        if found is None:
            raise TokenNotFound(f"no token with id {token_id!r}", token_id=token_id)
        self.app.check_access(
            principal, Action.MANAGE_TOKENS, found.tenant, what="token", ident=token_id
        )
        revoked = await self.app.store.revoke_token(token_id, scope)
        self._verified.pop(found.token_hash, None)  # refused from the next request on
        if revoked is None:
            raise TokenNotFound(f"no token with id {token_id!r}", token_id=token_id)
        await self.audit(principal, "token.revoke", token_id, tenant=found.tenant)
        return revoked

    # -- tenants and quotas ---------------------------------------------------------------------
    async def create_tenant(
        self,
        principal: Principal,
        tenant_id: str,
        max_concurrent: int | None = None,
        max_queued: int | None = None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> TenantRecord:
        self.app.check_access(principal, Action.MANAGE_TENANTS)
        max_limits, default_limits = dict(max_limits or {}), dict(default_limits or {})
        check_tenant_limits(max_runtime_s, max_limits, default_limits)
        if not TENANT_ID.fullmatch(tenant_id):
            raise InvalidRequest(
                f"tenant id {tenant_id!r}: lower-case letters, digits, '.', '_' and '-', at most "
                "63, starting with a letter or digit",
                field="id",
            )
        record = TenantRecord(
            id=tenant_id,
            created_at=utcnow(),
            max_concurrent=max_concurrent,
            max_queued=max_queued,
            max_runtime_s=max_runtime_s,
            max_limits=max_limits,
            default_limits=default_limits,
        )
        try:
            created = await self.app.store.create_tenant(record)
        except Conflict as exc:
            raise Conflict(f"tenant {tenant_id!r} already exists", tenant=tenant_id) from exc
        await self.audit(
            principal,
            "tenant.create",
            tenant_id,
            tenant=tenant_id,
            detail=_quota_detail(created),
        )
        return created

    async def list_tenants(self, principal: Principal) -> list[TenantRecord]:
        if principal.is_admin:
            return await self.app.store.list_tenants()
        return [await self._tenant(principal.tenant)]

    async def update_tenant(
        self,
        principal: Principal,
        tenant_id: str,
        max_concurrent: int | None,
        max_queued: int | None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> TenantRecord:
        """Replace every quota of the tenant (an omitted one: the server's default, none)."""
        self.app.check_access(
            principal, Action.MANAGE_TENANTS, tenant_id, what="tenant", ident=tenant_id
        )
        max_limits, default_limits = dict(max_limits or {}), dict(default_limits or {})
        check_tenant_limits(max_runtime_s, max_limits, default_limits)
        record = await self.app.store.update_tenant(
            tenant_id,
            max_concurrent,
            max_queued,
            max_runtime_s=max_runtime_s,
            max_limits=max_limits,
            default_limits=default_limits,
        )
        if record is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}", tenant=tenant_id)
        await self.audit(
            principal,
            "tenant.update",
            tenant_id,
            tenant=tenant_id,
            detail=_quota_detail(record),
        )
        return record

    async def limit_spec(self, tenant_id: str, spec: ExecSpec) -> ExecSpec:
        """``spec`` under the tenant's runtime cap and resource limits (``tenant_spec``)."""
        record = await self.app.store.get_tenant(tenant_id)
        if record is None:
            return spec
        return tenant_spec(spec, record, self.app.settings.default_timeout_s)

    async def quota(self, principal: Principal, tenant_id: str | None = None) -> Quota:
        """The tenant's limits in force and its load now (``mcpexec quota show``; the numbers
        per tenant for metrics)."""
        tenant_id = tenant_id or principal.tenant
        if not principal.is_admin and tenant_id != principal.tenant:
            raise TenantNotFound(f"no tenant {tenant_id!r}", tenant=tenant_id)
        self.app.check_access(principal, Action.READ)  # every role of the tenant may look
        record = await self._tenant(tenant_id)
        running, queued = await self.app.store.tenant_load(tenant_id)
        s = self.app.settings
        return Quota(
            tenant=tenant_id,
            max_concurrent=_either(record.max_concurrent, s.tenant_max_concurrent),
            max_queued=_either(record.max_queued, s.tenant_max_queued),
            running=running,
            queued=queued,
            own_max_concurrent=record.max_concurrent,
            own_max_queued=record.max_queued,
            max_runtime_s=record.max_runtime_s,
            max_limits=dict(record.max_limits),
            default_limits=dict(record.default_limits),
        )

    async def _tenant(self, tenant_id: str) -> TenantRecord:
        record = await self.app.store.get_tenant(tenant_id)
        if record is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}", tenant=tenant_id)
        return record

    # -- audit ----------------------------------------------------------------------------------
    async def audit(
        self,
        principal: Principal,
        action: str,
        target: str,
        *,
        tenant: str | None = None,
        at: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.app.store.add_audit(
            AuditEntry(
                at=at or utcnow(),
                tenant=tenant or principal.tenant,
                actor=principal.id,
                token_id=principal.token_id,
                action=action,
                target=target,
                detail=detail or {},
            )
        )

    async def list_audit(
        self,
        principal: Principal,
        tenant: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[AuditEntry]:
        if not principal.is_admin:
            tenant = tenant or principal.tenant
        if tenant is not None:
            self.app.check_access(principal, Action.READ_AUDIT, tenant, what="tenant", ident=tenant)
        else:
            self.app.check_access(principal, Action.READ_AUDIT)
        return await self.app.store.list_audit(tenant, max(1, min(limit, 1000)), before)


def _quota_detail(record: TenantRecord) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "max_concurrent": record.max_concurrent,
        "max_queued": record.max_queued,
    }
    if record.max_runtime_s is not None:
        detail["max_runtime_s"] = record.max_runtime_s
    if record.max_limits:
        detail["max_limits"] = dict(record.max_limits)
    if record.default_limits:
        detail["default_limits"] = dict(record.default_limits)
    return detail


def _either(own: int | None, default: int | None) -> int | None:
    return own if own is not None else default


__all__ = ["DEFAULT_TENANT", "Quota", "TenantOps"]
