"""Tenancy in the store contract (issue 10): tenants, principals behind tokens, the audit log,
and the two quota checks done inside the write's own transaction (enqueue's ``max_queued``,
claim's ``max_concurrent`` with the fair pick across tenants)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from mcpexec.errors import Conflict, QuotaExceeded
from mcpexec.models import RunFilter
from mcpexec.store.base import AuditEntry, ClaimLimits, Store, TenantRecord, TokenRecord

from .contract_helpers import LEASE, OK, T0, enqueue, new_run, t

pytestmark = pytest.mark.anyio


async def test_tenants_crud(store: Store) -> None:
    assert [x.id for x in await store.list_tenants()] == ["default"]
    made = await store.create_tenant(TenantRecord("data-team", T0, max_concurrent=4))
    assert made == TenantRecord("data-team", T0, max_concurrent=4)
    with pytest.raises(Conflict):
        await store.create_tenant(TenantRecord("data-team", T0))
    assert await store.get_tenant("data-team") == made
    assert await store.get_tenant("nope") is None
    changed = await store.update_tenant("data-team", None, 10)
    assert changed == TenantRecord("data-team", T0, max_concurrent=None, max_queued=10)
    assert await store.update_tenant("nope", 1, 1) is None
    assert [x.id for x in await store.list_tenants()] == ["data-team", "default"]


async def test_tenant_runtime_and_resource_limits_round_trip(store: Store) -> None:
    made = await store.create_tenant(
        TenantRecord(
            "data-team",
            T0,
            max_runtime_s=3600,
            max_limits={"memory_mb": 2048, "pids": 64},
            default_limits={"memory_mb": 512},
        )
    )
    assert made.max_runtime_s == 3600
    assert made.max_limits == {"memory_mb": 2048, "pids": 64}
    assert made.default_limits == {"memory_mb": 512}
    assert await store.get_tenant("data-team") == made
    default = await store.get_tenant("default")  # migrated: no limits of its own
    assert default is not None
    assert (default.max_runtime_s, default.max_limits, default.default_limits) == (None, {}, {})
    changed = await store.update_tenant(
        "data-team", 4, None, max_runtime_s=60, max_limits={"cpu_s": 30}
    )
    assert changed == TenantRecord(
        "data-team", T0, max_concurrent=4, max_runtime_s=60, max_limits={"cpu_s": 30}
    )
    assert await store.get_tenant("data-team") == changed
    cleared = await store.update_tenant("data-team", None, None)  # replaces every quota
    assert cleared == TenantRecord("data-team", T0)


async def test_tokens_principals_revoke_touch(store: Store) -> None:
    await store.create_tenant(TenantRecord("acme", T0))
    first = TokenRecord("k1", "ci", "h1", "submitter", "acme", T0, principal_id="p1")
    second = TokenRecord("k2", "ci (rotated)", "h2", "submitter", "acme", t(1), principal_id="p1")
    other = TokenRecord("k3", "op", "h3", "operator", "default", t(2), expires_at=t(99))
    for token in (first, second, other):
        await store.add_token(token)
    assert await store.token_by_hash("h2") == second  # two tokens, one principal
    assert (await store.token_by_hash("h3")) == dataclasses.replace(other, principal_id="k3")
    assert [x.id for x in await store.list_tokens("acme")] == ["k1", "k2"]
    assert [x.id for x in await store.list_tokens()] == ["k1", "k2", "k3"]
    assert await store.revoke_token("k1", "default") is None  # not of that tenant
    revoked = await store.revoke_token("k1", "acme")
    assert revoked is not None
    assert revoked.revoked
    assert (await store.revoke_token("k1")) is not None  # idempotent
    assert (await store.token_by_hash("h1")) == dataclasses.replace(first, revoked=True)
    assert await store.revoke_token("nope") is None
    await store.touch_token("k2", t(5))
    touched = await store.token_by_hash("h2")
    assert touched is not None
    assert touched.last_used_at == t(5)


async def test_owner_recorded_and_filtered(store: Store) -> None:
    mine = dataclasses.replace(new_run(), owner="p1")
    theirs = dataclasses.replace(new_run(), owner="p2")
    await enqueue(store, mine, theirs)
    run = await store.get_run(mine.id)
    assert run is not None
    assert run.owner == "p1"
    page = await store.list_runs(RunFilter(owner="p1"), 10, None)
    assert [r.id for r in page.runs] == [mine.id]


async def test_enqueue_refuses_past_max_queued_in_its_transaction(store: Store) -> None:
    await store.create_tenant(TenantRecord("small", T0, max_queued=2))
    ok = [new_run(tenant="small", key=f"k{i}") for i in range(2)]
    await enqueue(store, *ok)
    with pytest.raises(QuotaExceeded) as refused:
        await store.enqueue(new_run(tenant="small"))
    assert refused.value.code == "quota_exceeded"
    assert refused.value.details["limit"] == "max_queued"
    assert refused.value.details["retry_after_s"] > 0
    # an idempotent replay is not a new run: answered, not refused
    again, created = await store.enqueue(new_run(tenant="small", key="k0"))
    assert not created
    assert again.id == ok[0].id
    # the server default applies to a tenant without its own limit; others are unaffected
    with_default = dataclasses.replace(new_run(), default_max_queued=1)
    await store.enqueue(with_default)
    with pytest.raises(QuotaExceeded):
        await store.enqueue(dataclasses.replace(new_run(), default_max_queued=1))
    # a claimed run leaves the queue: there is room again
    await store.create_tenant(TenantRecord("solo", T0, max_queued=1))
    await store.enqueue(new_run(tenant="solo"))
    with pytest.raises(QuotaExceeded):
        await store.enqueue(new_run(tenant="solo"))
    claims = await store.claim("w", 10, T0, T0 + LEASE)
    assert "solo" in {c.run.tenant for c in claims}
    await store.enqueue(new_run(tenant="solo"))


async def test_submits_are_audited_with_the_run(store: Store) -> None:
    new = dataclasses.replace(new_run(tenant="acme"), owner="p1", token_id="k1")
    await store.enqueue(new)
    await store.add_audit(AuditEntry(t(1), "acme", "p1", "cancel", new.id, token_id="k1"))
    await store.add_audit(AuditEntry(t(2), "other", "p9", "token.create", "k9"))
    entries = await store.list_audit("acme", 10)
    assert [(e.action, e.target, e.actor, e.token_id) for e in entries] == [
        ("cancel", new.id, "p1", "k1"),
        ("submit", new.id, "p1", "k1"),
    ]
    everything = await store.list_audit(None, 10)
    assert [e.action for e in everything] == ["token.create", "cancel", "submit"]
    older = await store.list_audit(None, 10, before=everything[0].seq)
    assert [e.action for e in older] == ["cancel", "submit"]
    assert len(await store.list_audit(None, 1)) == 1


async def test_claim_respects_max_concurrent(store: Store) -> None:
    await store.create_tenant(TenantRecord("capped", T0, max_concurrent=2))
    await enqueue(store, *(new_run(tenant="capped") for _ in range(5)))
    first = await store.claim("w1", 10, T0, T0 + LEASE)
    assert len(first) == 2
    assert await store.claim("w2", 10, T0, T0 + LEASE) == []  # another claimer: still capped
    done = first[0]
    await store.finish_attempt(done.run.id, done.attempt, "w1", OK, t(1), None)
    assert len(await store.claim("w2", 10, t(1), t(1) + LEASE)) == 1
    # the server default caps a tenant that sets none
    await enqueue(store, *(new_run() for _ in range(3)))
    limits = ClaimLimits(default_max_concurrent=1)
    claimed = await store.claim("w3", 10, t(2), t(2) + LEASE, limits)
    assert [c.run.tenant for c in claimed] == ["default"]


async def test_claim_is_fair_across_tenants(store: Store) -> None:
    # A's backlog came first and has higher priority; B's runs still get every other slot.
    await enqueue(store, *(new_run(tenant="a", priority=5) for _ in range(20)))
    b_runs = await enqueue(store, *(new_run(tenant="b", created_at=t(1)) for _ in range(2)))
    claimed = await store.claim("w", 4, t(2), t(2) + LEASE)
    tenants = [c.run.tenant for c in claimed]
    assert sorted(tenants) == ["a", "a", "b", "b"]
    assert {c.run.id for c in claimed if c.run.tenant == "b"} == set(b_runs)
    # within a tenant, priority then FIFO still holds
    await enqueue(store, new_run("c-low", tenant="c", created_at=t(3)))
    await enqueue(store, new_run("c-high", tenant="c", priority=9, created_at=t(4)))
    await enqueue(store, new_run("c-low2", tenant="c", created_at=t(5)))
    picked = await store.claim("w", 3, t(6), t(6) + LEASE)
    c_ids = [c.run.id for c in picked if c.run.tenant == "c"]
    assert c_ids[:2] == ["c-high", "c-low"]


async def test_enqueue_refuses_past_the_global_max_queued(store: Store) -> None:
    for tenant in ("a", "b"):
        await store.enqueue(dataclasses.replace(new_run(tenant=tenant), global_max_queued=2))
    with pytest.raises(QuotaExceeded) as refused:
        await store.enqueue(dataclasses.replace(new_run(tenant="c"), global_max_queued=2))
    assert refused.value.details["limit"] == "global_max_queued"
    await store.enqueue(new_run(tenant="c"))  # no global limit given: accepted


async def test_concurrent_submits_fill_max_queued_exactly(store: Store) -> None:
    """30 submits of one tenant at once against max_queued=10 (and a second tenant alongside):
    exactly 10 admitted, the others refused with the count they saw, nothing refused or run
    lost, and a refused run leaves no trace (no row, no audit entry, no count)."""
    await store.create_tenant(TenantRecord("busy", T0, max_queued=10))
    busy = [new_run(f"busy-{i:02}", tenant="busy") for i in range(30)]
    other = [new_run(f"other-{i:02}", tenant="other") for i in range(10)]
    results = await asyncio.gather(
        *(store.enqueue(n) for n in [*busy, *other]), return_exceptions=True
    )
    refused = [r for r in results[:30] if isinstance(r, QuotaExceeded)]
    admitted = [r[0].id for r in results[:30] if not isinstance(r, BaseException) and r[1]]
    assert len(admitted) == 10
    assert len(refused) == 20
    assert all(r.details["queued"] == 10 and r.details["max_queued"] == 10 for r in refused)
    assert all(not isinstance(r, BaseException) and r[1] for r in results[30:])
    page = await store.list_runs(RunFilter(tenant="busy"), 100, None)
    assert sorted(r.id for r in page.runs) == sorted(admitted)
    submits = [e.target for e in await store.list_audit("busy", 100) if e.action == "submit"]
    assert sorted(submits) == sorted(admitted)
    assert (await store.stats("busy")).by_status["pending"] == 10
    with pytest.raises(QuotaExceeded):
        await store.enqueue(new_run(tenant="busy"))
