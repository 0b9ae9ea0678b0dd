"""Builders for the contract tests: a fixed clock and terse run/claim helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcpexec.models import DEFAULT_RETRY, ExecSpec, Failure, FailureKind
from mcpexec.store.base import AttemptOutcome, Claim, NewRun, Store

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE = timedelta(seconds=30)
_counter = iter(range(1, 1_000_000))


def t(seconds: float) -> datetime:
    """``seconds`` after the test clock's start."""
    return T0 + timedelta(seconds=seconds)


def new_run(
    run_id: str | None = None,
    *,
    tenant: str = "default",
    priority: int = 0,
    created_at: datetime = T0,
    run_at: datetime | None = None,
    key: str | None = None,
    labels: dict[str, str] | None = None,
    spec: ExecSpec | None = None,
) -> NewRun:
    return NewRun(
        id=run_id or f"run-{next(_counter)}",
        tenant=tenant,
        spec=spec or ExecSpec(command=["echo", "hi"]),
        retry=DEFAULT_RETRY,
        priority=priority,
        labels=labels or {},
        created_at=created_at,
        run_at=run_at,
        idempotency_key=key,
    )


async def enqueue(store: Store, *runs: NewRun) -> list[str]:
    ids = []
    for new in runs:
        run, _ = await store.enqueue(new)
        ids.append(run.id)
    return ids


async def claim_one(store: Store, worker: str = "w1", now: datetime = T0) -> Claim:
    claims = await store.claim(worker, 1, now, now + LEASE)
    assert len(claims) == 1, claims
    return claims[0]


OK = AttemptOutcome(succeeded=True, exit_code=0, result={"answer": 42})


def failed(kind: FailureKind = FailureKind.EXIT_CODE, message: str = "boom") -> AttemptOutcome:
    exit_code = 1 if kind == FailureKind.EXIT_CODE else None
    return AttemptOutcome(
        succeeded=False, exit_code=exit_code, failure=Failure(kind=kind, message=message)
    )
