"""``/api/v1/tenants``, ``/api/v1/tokens``, ``/api/v1/audit`` (issue 10).

A token's secret is in the answer to its creation only; listings show names, roles and times.
Who may call what is the App's rule (``App.check_access``), the same as over MCP and the CLI."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.app import TokenRecord
from mcpexec.models import json_integer
from mcpexec.tenancy import TENANT_ID
from mcpexec.tenant_ops import Quota

router = APIRouter(prefix="/api/v1", tags=["tenancy"])

#: At most ten years: an expiry is a number of seconds from now.
MAX_EXPIRY_S = 10 * 366 * 86400


class ResourceLimits(BaseModel):
    """A tenant's maximum or default resource limits: fields of a run's ``limits``, with the
    same bounds (omitted: none of the tenant's own)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(default=None, ge=16, le=1_048_576, description="MiB")
    cpu_s: int | None = Field(default=None, ge=1, le=86_400, description="CPU seconds")
    pids: int | None = Field(default=None, ge=8, le=1_000_000, description="processes")
    disk_mb: int | None = Field(default=None, ge=1, le=1_048_576, description="workdir, MiB")

    _integers = field_validator("*", mode="before")(json_integer)

    def given(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class TenantQuotas(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(default=None, ge=1, le=1_000_000)
    max_queued: int | None = Field(default=None, ge=1, le=100_000_000)
    max_runtime_s: int | None = Field(
        default=None,
        ge=1,
        le=7 * 86_400,
        description="caps a run's timeout_s; a run without one gets min(server default, this)",
    )
    max_limits: ResourceLimits = Field(
        default_factory=ResourceLimits, description="a run's limits may not exceed these"
    )
    default_limits: ResourceLimits = Field(
        default_factory=ResourceLimits,
        description="a run's limit not given: this, else the maximum",
    )

    _integers = field_validator("max_concurrent", "max_queued", "max_runtime_s", mode="before")(
        json_integer
    )


class TenantCreate(TenantQuotas):
    id: str = Field(
        pattern=f"^{TENANT_ID.pattern}$",
        max_length=63,
        description="lower-case word, e.g. data-team",
    )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "operator", "submitter", "viewer"] = "submitter"
    tenant: str | None = Field(default=None, description="default: the caller's tenant")
    kind: Literal["user", "service"] = "service"
    expires_in_s: int | None = Field(default=None, ge=1, le=MAX_EXPIRY_S)

    _integers = field_validator("expires_in_s", mode="before")(json_integer)


def token_view(token: TokenRecord) -> dict[str, Any]:
    """A token without its secret or hash."""
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "tenant": token.tenant,
        "principal": token.principal,
        "kind": token.kind,
        "created_at": token.created_at.isoformat(),
        "last_used_at": None if token.last_used_at is None else token.last_used_at.isoformat(),
        "expires_at": None if token.expires_at is None else token.expires_at.isoformat(),
        "revoked": token.revoked,
    }


def quota_view(quota: Quota) -> dict[str, Any]:
    return {
        "tenant": quota.tenant,
        "limits": {
            "max_concurrent": quota.max_concurrent,
            "max_queued": quota.max_queued,
            "max_runtime_s": quota.max_runtime_s,
        },
        "own": {"max_concurrent": quota.own_max_concurrent, "max_queued": quota.own_max_queued},
        "max_limits": dict(quota.max_limits),
        "default_limits": dict(quota.default_limits),
        "in_use": {"running": quota.running, "queued": quota.queued},
    }


def _quotas(body: TenantQuotas) -> dict[str, Any]:
    return {
        "max_runtime_s": body.max_runtime_s,
        "max_limits": body.max_limits.given(),
        "default_limits": body.default_limits.given(),
    }


@router.post("/tenants", status_code=201, summary="Create a tenant with its quotas (admin)")
async def create_tenant(body: TenantCreate, app: AppDep, principal: PrincipalDep) -> Any:
    await app.tenancy.create_tenant(
        principal, body.id, body.max_concurrent, body.max_queued, **_quotas(body)
    )
    return quota_view(await app.tenancy.quota(principal, body.id))


@router.get("/tenants", summary="Tenants with their quotas and load (admin: all)")
async def list_tenants(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    tenants = await app.tenancy.list_tenants(principal)
    return {"tenants": [quota_view(await app.tenancy.quota(principal, t.id)) for t in tenants]}


@router.get("/tenants/{tenant_id}", summary="A tenant's quotas and what it uses now")
async def get_tenant(tenant_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return quota_view(await app.tenancy.quota(principal, tenant_id))


@router.get("/quota", summary="The caller's tenant: its quotas and what it uses now")
async def own_quota(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return quota_view(await app.tenancy.quota(principal))


@router.put("/tenants/{tenant_id}", summary="Replace a tenant's quotas (admin)")
async def update_tenant(
    tenant_id: str, body: TenantQuotas, app: AppDep, principal: PrincipalDep
) -> dict[str, Any]:
    await app.tenancy.update_tenant(
        principal, tenant_id, body.max_concurrent, body.max_queued, **_quotas(body)
    )
    return quota_view(await app.tenancy.quota(principal, tenant_id))


@router.post("/tokens", status_code=201, summary="Create a token (its secret is shown once)")
async def create_token(body: TokenCreate, app: AppDep, principal: PrincipalDep) -> Any:
    token, record = await app.tenancy.create_token(
        principal,
        name=body.name,
        role=body.role,
        tenant=body.tenant,
        expires_in_s=body.expires_in_s,
        kind=body.kind,
    )
    return {**token_view(record), "token": token}


@router.get("/tokens", summary="Tokens (never their secrets): admin all, operator its tenant")
async def list_tokens(
    app: AppDep, principal: PrincipalDep, tenant: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return {"tokens": [token_view(t) for t in await app.tenancy.list_tokens(principal, tenant)]}


@router.delete("/tokens/{token_id}", summary="Revoke a token (refused from the next request)")
async def revoke_token(token_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return token_view(await app.tenancy.revoke_token(principal, token_id))


@router.get("/audit", summary="The audit log, latest first (admin; operators: their tenant)")
async def audit(
    app: AppDep,
    principal: PrincipalDep,
    tenant: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
) -> dict[str, Any]:
    entries = await app.tenancy.list_audit(principal, tenant, limit, before)
    return {
        "entries": [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "tenant": e.tenant,
                "actor": e.actor,
                "token_id": e.token_id,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in entries
        ],
        "next_before": entries[-1].seq if len(entries) == limit else None,
    }
