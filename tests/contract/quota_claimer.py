"""A claimer process for the quota test (run as a script, not collected).

Usage: quota_claimer.py STORE_URL WORKER_ID BATCH
Claims with batches of BATCH under ``ClaimLimits`` until the queue is drained; for each claimed
run it records ``start`` just after the claim committed and ``end`` just before the finish
commits (CLOCK_MONOTONIC, shared by all processes on the host), so each recorded interval lies
inside the time the store counted the run as running. Prints [[run_id, tenant, start_ns,
end_ns], ...] as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta

from contract.barrier import wait_for_go
from mcpexec.models import utcnow
from mcpexec.store.base import AttemptOutcome, ClaimLimits
from mcpexec.store.url import open_store


async def main(url: str, worker: str, batch: int) -> None:
    store = open_store(url)
    await store.open()
    await asyncio.to_thread(wait_for_go)
    spans: list[list[object]] = []
    idle = 0
    while idle < 20:  # the others hold the tenant's slots for a moment: retry a while
        now = utcnow()
        claims = await store.claim(
            worker, batch, now, now + timedelta(seconds=30), ClaimLimits(None)
        )
        idle = 0 if claims else idle + 1
        if not claims:
            await asyncio.sleep(0.01)
            continue
        started = time.monotonic_ns()
        await asyncio.sleep(0.005)  # hold the slots so that the processes overlap
        for claim in claims:
            spans.append([claim.run.id, claim.run.tenant, started, time.monotonic_ns()])
            done = await store.finish_attempt(
                claim.run.id, claim.attempt, worker, AttemptOutcome(succeeded=True), utcnow(), None
            )
            assert done is not None
    await store.close()
    print(json.dumps(spans))


if __name__ == "__main__":
    url, worker, batch = sys.argv[1:4]
    asyncio.run(main(url, worker, int(batch)))
