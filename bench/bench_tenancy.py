"""Tenancy: what the fair, quota-checking claim costs, and how long another tenant waits.

(a) claim cost: ``SqliteStore.claim`` (batch 4) + finish, with one tenant's backlog of N pending
    runs, and with the same backlog spread over 10 tenants (the claim finds the tenants with a
    loose index scan and reads each one's first runs);
(b) fairness in slot turnovers: tenant A queues N runs, then tenant B queues 10; S worker slots
    claim and finish one run at a time. Reported: how many slot turnovers (finished runs) passed
    before each of B's runs started. FIFO (before issue 10) starts B's first after about N.

Usage::

    .venv/bin/python bench/bench_tenancy.py              # N = 10,000
    .venv/bin/python bench/bench_tenancy.py --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.store.base import AttemptOutcome, Claim, ClaimLimits, NewRun
from mcpexec.store.sqlite import SqliteStore

LEASE = timedelta(seconds=60)
DONE = AttemptOutcome(succeeded=True, exit_code=0)


def _new(run_id: str, tenant: str) -> NewRun:
    return NewRun(
        id=run_id,
        tenant=tenant,
        spec=ExecSpec(command=["true"]),
        retry=DEFAULT_RETRY,
        priority=0,
        labels={},
        created_at=datetime.now(UTC),
    )


async def _fill(store: SqliteStore, n: int, tenants: int, prefix: str) -> None:
    for i in range(n):
        await store.enqueue(_new(f"{prefix}{i}", f"t{i % tenants}"))


async def claim_cost(n: int, tenants: int, rounds: int) -> tuple[float, float]:
    """Median and p95 ms of one claim (batch 4) with a backlog of ``n`` over ``tenants``."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        await store.open()
        await _fill(store, n, tenants, "r")
        times = []
        for _ in range(rounds):
            now = datetime.now(UTC)
            started = time.perf_counter()
            claims = await store.claim("w", 4, now, now + LEASE, ClaimLimits(None))
            times.append((time.perf_counter() - started) * 1000)
            for c in claims:
                await store.finish_attempt(c.run.id, c.attempt, "w", DONE, now, None)
        await store.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


async def fairness(n: int, slots: int) -> list[int]:
    """Slot turnovers before each of B's 10 runs started, A having queued ``n`` first."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        await store.open()
        for i in range(n):
            await store.enqueue(_new(f"a{i}", "a"))
        for i in range(10):
            await store.enqueue(_new(f"b{i}", "b"))
        running: list[Claim] = []
        turnovers = 0
        b_started: list[int] = []
        while len(b_started) < 10:
            now = datetime.now(UTC)
            claims = await store.claim("w", slots - len(running), now, now + LEASE)
            b_started += [turnovers for c in claims if c.run.tenant == "b"]
            running += claims
            oldest = running.pop(0)  # one slot turns over
            await store.finish_attempt(oldest.run.id, oldest.attempt, "w", DONE, now, None)
            turnovers += 1
        await store.close()
    return b_started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    for tenants in (1, 10):
        median, p95 = await claim_cost(args.n, tenants, args.rounds)
        print(
            f"claim (batch 4) + finish, {args.n} pending over {tenants} tenant(s): "
            f"claim median {median:.2f} ms, p95 {p95:.2f} ms"
        )
    waits = await fairness(args.n, args.slots)
    print(
        f"fairness: A queued {args.n}, then B 10; {args.slots} slots: B's runs started after "
        f"{waits} slot turnovers (FIFO: B's first after about {args.n})"
    )


if __name__ == "__main__":
    asyncio.run(main())
